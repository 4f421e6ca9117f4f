# One image for every role: worker, dashboard, evaluator, and the one-shot set-up.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    HPO_CACHE_DIR=/cache HPO_OUTPUT_ROOT=/runs
# torch from PyPI is the CUDA build on Linux: the workers use the GPU they are given.
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml README.md ./
COPY hpo hpo
COPY trainers trainers
COPY evaluators evaluators
COPY storage storage
RUN pip install --no-cache-dir '.[s3]'
ENTRYPOINT ["hpo"]
CMD ["--help"]
