//! Placeholder for the server entry point; the lead's `server.rs` replaces it.

/// Runs the broker until SIGINT or SIGTERM.
///
/// # Errors
/// When the server cannot start or stops on a fatal error.
pub fn run(
    config: crate::config::ServerConfig,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = config;
    unimplemented!()
}
