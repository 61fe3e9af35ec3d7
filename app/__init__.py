"""Tuneboard web application: settings, database, services and HTTP routes (never imports torch)."""
