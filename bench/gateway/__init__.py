"""gateway: fairgate's hot path next to LiteLLM and vllm-router over one fast upstream
(``python -m bench.gateway``; see README.md here)."""
