"""Synthesis methods. Importing this package registers every built-in method."""
from ..adabldm import method as _adabldm  # noqa: F401,E402  (registers "adabldm")
from . import cutpaste  # noqa: F401,E402  (hand-crafted: registers "cutpaste")
from . import cutpaste_scar  # noqa: F401,E402
from . import bezier  # noqa: F401,E402
from . import draem  # noqa: F401,E402
from . import memseg  # noqa: F401,E402
from . import glass_local  # noqa: F401,E402
from . import copypaste  # noqa: F401,E402
from . import simplenet  # noqa: F401,E402  (feature: registers "simplenet")
from . import glass_global  # noqa: F401,E402  (feature: registers "glass_global")
from . import gan  # noqa: F401,E402  (generative: registers "texture_gan")
from . import realnet  # noqa: F401,E402  (generative: registers "realnet_sdas")
from . import defectfill  # noqa: F401,E402  (generative: registers "defectfill")
from . import defect_gan  # noqa: F401,E402  (generative: registers "defect_gan")
from .batch import synthesize  # noqa: F401,E402
