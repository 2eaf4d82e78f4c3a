"""Serving: the local web page and its JSON API, with requests batched into sampler calls."""
