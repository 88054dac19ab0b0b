"""The sides a bench run measures, in the order its tables show them."""

PLATFORM = "platform"
CELERY = "celery"  # plain Celery; results read with result.get() where there is a result to read
CELERY_ROUTE = "celery-route"  # plain Celery, results read through its own Flask route
DRAMATIQ = "dramatiq"  # Dramatiq on its Redis broker: reported, not a target
SIDES = (PLATFORM, CELERY, CELERY_ROUTE, DRAMATIQ)
NAMES = {
    PLATFORM: "platform",
    CELERY: "plain Celery",
    CELERY_ROUTE: "plain Celery, read via its route",
    DRAMATIQ: "Dramatiq",
}
