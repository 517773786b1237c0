"""The cold-start bench: each server started cold under the same
functions-framework and measured alike (see bench/README.md).

Modules, one concern each: `common` (paths, requests, records), `models`
(training, labels, publishing), `servers` (which servers, their processes),
`client` (HTTP requests and answer checks), `load` (wrk), `alone`
(onnxruntime alone on a twin), `run` (one run of one server), `report`
(medians, targets, tables), `environment` (commit, machine, packages), `cli`
(options and the whole run). The package imports neither numpy, pandas nor
scikit-learn: children do the model work, so the client shares no library
pages with the servers it measures.
"""
