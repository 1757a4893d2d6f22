"""The ECCV16 family (Zhang, Isola & Efros 2016). The file names are the ones saved model folders and Hub
repos carry (`auto_map` points at them), so they must not change."""
