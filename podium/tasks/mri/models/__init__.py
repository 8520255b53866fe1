"""Registry of the MRI task's networks: a recipe names one (``model: {name: varnet, ...}``), as timm does.

Add a model with ``@register_model("name")`` on its class (or factory) in a module listed here.
"""

from podium.registry import ModelRegistry

MODELS = ModelRegistry("MRI", __name__, ("varnet", "feature_varnet", "promptmr_plus"))
register_model = MODELS.register
model_names = MODELS.names
create_model = MODELS.create
