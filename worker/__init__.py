"""Celery worker and the pure training code it runs."""
