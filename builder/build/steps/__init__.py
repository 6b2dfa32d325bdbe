"""The layer-producing steps: COPY/ADD entries (`copy`), RUN on the host (`run`), APP files and
type detection (`app`). Each returns tar entries or runs a command; the executor writes layers."""
