"""The product's core: models, runtime, timers, calendar and the use-case services.

Nothing in this package imports Flask; the web layer calls ``engine.services``.
"""
