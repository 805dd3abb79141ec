"""Outbound HTTP, one way for every request the service makes: URLs parsed once (`urls`), the
destination policy (`policy`), and the transport that applies it at every connect (`transport`)."""
