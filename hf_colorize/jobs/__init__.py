"""Dataset-scale jobs: colorize a whole image folder, parquet shards, Hub dataset or video folder into
a dataset (parquet shards + manifest + card), on one process or many (`accelerate launch`, `torchrun`),
resumable. `run_dataset_job(DatasetJob(source, output, ...))` is what `hf-colorize colorize-dataset` runs.

Modules: `sources` (what is read, in one global order), `shards` (work units and their files),
`readahead` (decoding ahead of the network), `ranks` (which process this is), `manifest` (settings and
manifest), `card` (the dataset card), `run` (the job), `videos` (video folders)."""

from hf_colorize.jobs.run import DatasetJob, run_dataset_job

__all__ = ["DatasetJob", "run_dataset_job"]
