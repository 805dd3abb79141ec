"""The API's models are built on first use (web/json_body.py ApiModel): a model that cannot be built must still
fail here, not at the first request that needs it."""

import web  # noqa: F401  (create_app's view modules define the models)
from web import alerts, health, inverters, job_request, jobs, openapi, session, streams  # noqa: F401
from web.json_body import ApiModel, ApiRootModel


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_api_model_is_deferred_and_builds():
    models = {
        model
        for base in (ApiModel, ApiRootModel)
        for model in _subclasses(base)
        if not model.__pydantic_generic_metadata__["parameters"]  # generic bases are not models of the API
    }
    assert len(models) > 50
    for model in sorted(models, key=lambda model: model.__qualname__):
        model.model_rebuild()  # raises what building the model on its first use would
        assert model.__pydantic_complete__, model
