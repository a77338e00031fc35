"""Child process: serve a GGUF with xllamacpp on 127.0.0.1; print the address; exit when stdin closes."""

import os
import sys


def main(gguf: str, alias: str, threads: str, context: str, parallel: str) -> None:
    try:
        import xllamacpp as xlc
    except ImportError:
        print("xllamacpp is not installed (pip install xllamacpp)", file=sys.stderr, flush=True)
        os._exit(3)
    params = xlc.CommonParams()
    params.model.path = gguf
    params.hostnames = ["127.0.0.1"]
    params.port = 0                      # a free ephemeral port
    params.n_ctx = int(context) * int(parallel)
    params.n_parallel = int(parallel)
    params.cpuparams.n_threads = int(threads)
    params.cpuparams_batch.n_threads = int(threads)
    params.verbosity = 1                 # errors only
    params.model_alias = {alias}
    server = xlc.Server(params)          # returns once the model is loaded and the socket listens
    print(server.listening_address, flush=True)
    sys.stdin.read()                     # until the parent closes stdin (or dies)
    os._exit(0)                          # never run llama.cpp's destructor with a request in flight


if __name__ == "__main__":
    main(*sys.argv[1:6])
