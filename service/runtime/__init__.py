"""Runtime pieces of the API: model store and holder, micro-batcher, dataset and job stores."""
