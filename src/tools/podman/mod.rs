//! podman: builds, imports, exports. Every podman invocation goes through here so the runtime
//! workaround (see [`runtime`]) is applied everywhere without touching the user's config.

pub mod runtime;
