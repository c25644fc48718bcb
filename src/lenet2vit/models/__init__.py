"""Every architecture, one file per family, imported in paper order so they register."""

import importlib
import pkgutil

# Paper order: the order `lenet2vit list` and the README table show.
_FAMILIES = ["lenet", "alexnet", "vgg", "googlenet", "resnet", "mobilenet", "efficientnet", "vit", "hybrid"]

_present = {m.name for m in pkgutil.iter_modules(__path__)}
for _name in _FAMILIES + sorted(_present - set(_FAMILIES)):
    if _name in _present:
        importlib.import_module(f"{__name__}.{_name}")
