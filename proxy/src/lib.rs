//! Bridle's transparent TCP proxy: every guarded TCP connection the
//! redirector sends here is named, decided by the engine, audited, and then
//! either refused at once, spliced to its original destination, or
//! intercepted and decided request by request.
//!
//! Owns, one module per stage of a connection, composed in [`server`]:
//! [`origin`] (the original destination the redirector recorded, and the
//! name the resolver learned for its IP) → [`detect`] (TLS ClientHello →
//! SNI, HTTP/1.x → `Host`, silence → server-speaks-first, else opaque) →
//! [`decide`] (one `net.connect` event per connection, named by SNI, else
//! Host, else DNS, else IP; an SNI or Host counts only where it is proven
//! to belong to the address: by the upstream's certificate, or by the
//! resolver having answered it with that address) → [`intercept`] (TLS
//! terminated with a leaf from [`tls`], every HTTP request decided on its
//! own with [`http`]'s analysis) or [`forward`] (connect and splice).
//! [`dns`] is the resolver.
//!
//! Entry points: [`Proxy::bind`] and [`Proxy::run`]; [`StaticOrigins`] is
//! the fake original-destination source for tests.
//!
//! Must never: connect anywhere but the recorded original destination (a
//! name from SNI or Host only selects policy, and only a proven one), inject
//! a credential into a request no certificate ties to its host, forward a
//! connection with no recorded original destination or without a
//! permitting decision, log payloads, headers or secrets, accept an
//! upstream certificate that does not verify, or trust Bridle's own CA
//! upstream.

pub mod decide;
pub mod detect;
pub mod dns;
pub mod error;
pub mod forward;
pub mod http;
pub mod intercept;
pub mod lineage;
pub mod listen;
pub mod origin;
pub mod server;
pub mod tls;

pub use error::{Error, Result};
pub use origin::{OriginalDestinations, StaticOrigins};
pub use server::{Proxy, ProxyConfig};
