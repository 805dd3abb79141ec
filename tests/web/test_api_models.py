"""The API's models are built on first use (web/json_body.py ApiModel): a model declared without it would be built
at every start again, and a model that cannot be built must still fail here, not at the first request that needs it."""

from pydantic import BaseModel

import web  # noqa: F401  (create_app's view modules define the models)
from web import alerts, health, inverters, job_request, jobs, openapi, session, streams  # noqa: F401


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_api_model_is_deferred_and_builds():
    # Every pydantic model of the web's modules, declared or made with create_model (the brands' connection,
    # onboarding and discovery bodies among them), whatever it derives from.
    models = {
        model
        for model in _subclasses(BaseModel)
        if model.__module__.startswith("web.")
        and not model.__pydantic_generic_metadata__["parameters"]  # generic bases are not models of the API
    }
    assert len(models) > 50
    for model in sorted(models, key=lambda model: model.__qualname__):
        assert model.model_config.get("defer_build"), (
            f"{model.__qualname__} is built at every start: derive from ApiModel"
        )
        model.model_rebuild()  # raises what building the model on its first use would
        assert model.__pydantic_complete__, model
