//! Where RELOAD finds the new configuration: the binary re-reads the file it was started with and
//! applies its flags again; a proxy started in-process (tests, the demo) has no source until one is set.

use crate::config::{Config, ConfigError};

/// Produces the configuration a RELOAD applies.
pub struct ConfigSource(Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>);

impl ConfigSource {
    pub fn new(load: impl Fn() -> Result<Config, ConfigError> + Send + Sync + 'static) -> Self {
        ConfigSource(Box::new(load))
    }

    /// Reads the configuration now.
    pub fn load(&self) -> Result<Config, ConfigError> {
        (self.0)()
    }
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigSource")
    }
}
