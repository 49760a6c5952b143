"""Helpers shared by the tests and the benchmark (bench/): a real Streamlit server and browser, a real
PostgreSQL server with pgvector."""
