"""Model families. Each subpackage is one family's remote-code set (configuration, modeling, image
processing, pipeline): the files that travel to the Hub, importing only each other, transformers,
torch, numpy and PIL."""
