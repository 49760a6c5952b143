"""Helpers shared by the end-to-end tests and the benchmark (bench/): a real Streamlit server and browser."""
