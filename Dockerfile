# One image for the web server and the workers; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
# torch first and pinned: the CPU build here; a GPU image swaps in a CUDA build of the same version.
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml ./
COPY app ./app
COPY worker ./worker
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY alembic.ini ./
# Editable, so templates/ and static/ are found beside the code.
RUN pip install --no-cache-dir -e .
EXPOSE 8000
CMD ["tuneboard", "serve", "--no-worker", "--host", "0.0.0.0"]
