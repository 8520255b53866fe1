"""Registry of the IQA task's networks: a recipe names one (``model: {name: expansionnet_v2, ...}``), as timm does.

Add a model with ``@register_model("name")`` on its class (or factory) in a module listed here.
"""

from podium.registry import ModelRegistry

MODELS = ModelRegistry("IQA", __name__, ("expansionnet_v2",))
register_model = MODELS.register
model_names = MODELS.names
create_model = MODELS.create
