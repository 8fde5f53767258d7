"""Configuration, parsed once at the edge and then frozen. Only this package reads the environment."""

from modelserve.config.model import ModelConfig, SignatureOverride, VersionPolicy, load_model_config
from modelserve.config.server import ServerConfig

__all__ = ["ModelConfig", "ServerConfig", "SignatureOverride", "VersionPolicy", "load_model_config"]
