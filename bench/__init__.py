"""The project's performance benchmark: scripts that import `assistant`, kept out of the installed package.

    python -m bench [--quick] [--json] [--out DIR] [--sections ingest,startup,...]   # from the repository root
    nhs-assistant bench ...                                                            # the same, from a checkout

Every figure is measured in the run on this machine, nothing asserts a timing; docs/PERFORMANCE.md holds
the results. Sections: ingest (pypdf, then chunks/s per embedding runtime), query (chain latency),
startup (a new `nhs-assistant ask` process per runtime beside `import sentence_transformers`), scale
(synthetic 10k-1M chunk indexes), app (`streamlit run app.py` to the first answer in chromium),
quality (every eval/qa set scored per runtime) and stores (the FAISS folder against PostgreSQL + pgvector
at 10k-100k chunks, and the Ray ingest; also `python -m bench.stores`, see bench/stores.py).
"""
