"""The decoding worker: a separate program that parses untrusted media under CPU, memory and time limits."""
