"""The Django app that stores fingerprints by content and matches media against them (app label `media`,
its tables `media_*`): models, the per-process index, the services that compute, store and match, and the
platform's C2PA signing credentials. The algorithms it runs are the pure package `media`."""
