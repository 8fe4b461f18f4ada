"""``python -m service.media.worker``: decode one job read from stdin, answer one JSON line on stdout.

Limits are set before any untrusted byte is read: RLIMIT_CPU (the kernel stops a
decoder that spins), RLIMIT_AS (a memory ceiling) and, from the parent, a
wall-clock timeout. A crash here costs this job only. The web process runs jobs
in children forked by ``service.media.forkserver`` (which has FFmpeg loaded
already); this entry point runs one job in a fresh interpreter, for tools and tests.
"""

from __future__ import annotations

import os
import resource
import sys
import urllib.error

from service.core.media_job import Changed, Job, Refused, job_decoder, job_encoder

# The exit status of a job whose store reads or writes failed (a retry may succeed).
STORE_FAILED = 3
# Decoding is batch work beside a web process that answers people: at niceness 10 the kernel
# gives a runnable web process the CPU about nine times in ten while 32 jobs decode at once.
NICENESS = 10


def limit(cpu_seconds: int, memory_bytes: int) -> None:
    """The kernel's ceilings for this process: CPU seconds (SIGXCPU, then SIGKILL), address space, priority."""
    os.nice(NICENESS)
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu_seconds, spent + cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(job: Job) -> tuple[int, bytes]:
    """(exit status, answer line) for one job, in a process already under its limits."""
    from service.media.decode import Refusal, decode
    from service.media.source import RemoteObject, SourceChanged

    source = RemoteObject(job.source_url, job.size, job.etag, job.read_timeout, job.part_sizes)
    try:
        answer: object = decode(job, source)
    except Refusal as refusal:
        answer = refusal.answer()
    except SourceChanged:
        answer = Changed()
    except MemoryError:
        answer = Refused("too_complex", "Decoding the file needs more memory than a job may use.")
    except (urllib.error.URLError, OSError) as exc:
        print(f"soundpost-decode: reading or writing the store failed: {exc}", file=sys.stderr)
        return STORE_FAILED, b""
    finally:
        source.close()
    if isinstance(answer, Refused) and source.was_read:
        answer.stored = source.stored()  # the web process checks the declared type and sizes with it
    return 0, job_encoder.encode(answer) + b"\n"


def main() -> int:
    job = job_decoder.decode(sys.stdin.buffer.read())
    # FFmpeg's libraries load after the limits, under the same ceiling as the decoding.
    limit(job.cpu_seconds, job.memory_bytes)
    status, answer = run(job)
    sys.stdout.buffer.write(answer)
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
