"""HTTP layer: the JSON API, the HTML pages and what they share."""
