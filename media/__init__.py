"""Media algorithms, pure Python with no Django: fingerprints (image, audio, voice), text fingerprints and
retrieval embeddings, generators, validation and limits, C2PA provenance, previews and real test samples.
The Django app that stores fingerprints and matches against them is `matching` (label `media`)."""
