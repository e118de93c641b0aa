//! Bridle's MCP gateway (not built yet: issue 5).
//!
//! Will own: the stdio wrapper (`bridle mcp wrap`), the streamable-HTTP and
//! legacy SSE reverse proxy, JSON-RPC inspection, tool pinning and poisoning
//! heuristics. Every message becomes an `engine::Event`; denied calls get a
//! JSON-RPC error and never reach the server.
//!
//! Must never: forward a call the engine has not allowed.
