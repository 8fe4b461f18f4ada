"""``python -m service.media.worker``: decode one job read from stdin, answer one JSON line on stdout.

The web process starts one of these per promotion. Limits are set before any
untrusted byte is read: RLIMIT_CPU (the kernel stops a decoder that spins),
RLIMIT_AS (a memory ceiling) and, from the parent, a wall-clock timeout. A crash
here costs this job only.
"""

from __future__ import annotations

import resource
import sys
import urllib.error

from service.core.media_job import Changed, Refused, job_decoder, job_encoder


def limit(cpu_seconds: int, memory_bytes: int) -> None:
    """The kernel's ceilings for this process: CPU seconds (SIGXCPU, then SIGKILL) and address space."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> int:
    job = job_decoder.decode(sys.stdin.buffer.read())
    limit(job.cpu_seconds, job.memory_bytes)
    # Imported after the limits: FFmpeg's libraries load under the same ceiling as the decoding.
    from service.media.decode import Refusal, decode
    from service.media.source import RemoteObject, SourceChanged

    source = RemoteObject(job.source_url, job.size, job.etag, job.read_timeout)
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
        return 3
    finally:
        source.close()
    sys.stdout.buffer.write(job_encoder.encode(answer) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
