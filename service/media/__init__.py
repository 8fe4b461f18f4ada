"""The decoding worker: a separate program that parses untrusted media under CPU, memory and time limits."""

import os

# numpy (the waveform's arithmetic) loads OpenBLAS, which would start a thread per core on import and
# reserve a buffer for each: address space under every job's ceiling, and threads in a process that
# forks. The worker does no linear algebra, so one thread is all it needs (set before numpy loads).
os.environ["OPENBLAS_NUM_THREADS"] = "1"
