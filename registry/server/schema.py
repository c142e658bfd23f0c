"""Every table of the registry, gathered from each domain's ``models`` module: what migrations compare against.

Each domain owns its tables; this module only imports them all so that ``Base.metadata`` is complete.
"""

from __future__ import annotations

from registry.artifacts import models as artifacts_models
from registry.audit import models as audit_models
from registry.auth import models as auth_models
from registry.core.tables import Base
from registry.lineage import models as lineage_models
from registry.policy import models as policy_models
from registry.scanning import models as scanning_models
from registry.synthetic import models as synthetic_models
from registry.trust import models as trust_models

DOMAIN_MODELS = (artifacts_models, audit_models, auth_models, lineage_models, policy_models, scanning_models,
                 synthetic_models, trust_models)
metadata = Base.metadata
