//! Request bodies captured from real clients publishing to a recording HTTP
//! server on 127.0.0.1: npm 11.19.1 `npm publish --registry http://127.0.0.1:<port>/`,
//! cargo 1.95.0 `cargo publish --registry local` (a sparse index whose
//! `config.json` points `api` at the server), twine 7.0.0 `twine upload
//! --repository-url http://127.0.0.1:<port>/legacy/`. Headers are in the tests.

/// `PUT /bridle-demo` body, whole (986 bytes).
pub(super) const NPM_BODY: &str = r#"{"_id":"bridle-demo","name":"bridle-demo","description":"demo","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{"name":"bridle-demo","version":"1.0.0","description":"demo","main":"index.js","license":"MIT","readme":"ERROR: No README data found!","_id":"bridle-demo@1.0.0","_nodeVersion":"20.20.2","_npmVersion":"11.19.1","dist":{"integrity":"sha512-PhZ7ohkL1U9a/VOmLISvlZCdTTnb+qdibFJs5XSK4DUJfET2yOQPM3nMQQg3FgszA24SAd5n2vyJCI1zL7q3SA==","shasum":"c60e7ffa4c6482f537a395930bbbd1761f10108e","tarball":"http://127.0.0.1:18555/bridle-demo/-/bridle-demo-1.0.0.tgz"}}},"access":null,"_attachments":{"bridle-demo-1.0.0.tgz":{"content_type":"application/octet-stream","data":"H4sIAAAAAAAC/+3VwYrCMBAG4Jx9ijDnmp3U2AXFB/DgzRfINoPEbZOSVBHEd5dq14N41KJsvsuQYRjI4U8aXf7qDX1ZZ+ggtpG9ACIWSvFH/YtccTaZFihlUaDiDCV+55IzZAPYxVYHhviESyIiv9UPUXuzq0jQofGhjXzB5XzEkn+j6fPfV7GN3g2cf6nwPv9yqlL+B3EEp2uCGfwEayoaG6o9ZLCnEK13MAMpUCBkYCiWwTbttduP1dp2p7/PAzKobEkudgtXyzWc0luSJEnyps76NglIAAwAAA==","length":220}}}"#;

/// `PUT /@acme%2fwidget` body, first 600 bytes.
pub(super) const NPM_SCOPED_PREFIX: &str = r#"{"_id":"@acme/widget","name":"@acme/widget","description":"scoped demo","dist-tags":{"latest":"2.1.0"},"versions":{"2.1.0":{"name":"@acme/widget","version":"2.1.0","description":"scoped demo","license":"MIT","readme":"x\n","readmeFilename":"README.md","_id":"@acme/widget@2.1.0","_nodeVersion":"20.20.2","_npmVersion":"11.19.1","dist":{"integrity":"sha512-+5Y6oRPbb9FiurcJxak2xV6QXgTb91l5MDThAzriHilDuKebqILsQUZonodkPoILp3PQ2HlYehZe4sf4iKmUeg==","shasum":"45f8b3798a17f44a23ee57bef41157036c16ba0e","tarball":"http://127.0.0.1:18555/@acme/widget/-/@acme/widget-2.1.0.tgz"}}},"access":"public","_attach"#;

/// `PUT /api/v1/crates/new` body up to the JSON end (length 300 = 0x12c,
/// little-endian), then the start of the .crate length and gzip header.
pub(super) const CARGO_JSON: &str = r#"{"name":"bridle-demo-crate","vers":"0.1.0","deps":[],"features":{},"authors":[],"description":"demo","documentation":null,"homepage":null,"readme":null,"readme_file":null,"keywords":[],"categories":[],"license":"MIT","license_file":null,"repository":null,"badges":{},"links":null,"rust_version":null}"#;
pub(super) const CARGO_AFTER_JSON: &[u8] = b"-\x04\x00\x00\x1f\x8b\x08\x08";

/// `POST /legacy/` (content type `multipart/form-data; boundary=fc054ba456bb4b47bfcb3af8d8cc2fc6`),
/// up to the start of the sdist.
pub(super) const TWINE_BOUNDARY: &str = "fc054ba456bb4b47bfcb3af8d8cc2fc6";
pub(super) const TWINE_PREFIX: &[u8] = concat!(
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"version\"\r\n",
    "\r\n",
    "0.1.0\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"name\"\r\n",
    "\r\n",
    "Bridle-Demo.Pkg\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"summary\"\r\n",
    "\r\n",
    "demo\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"metadata_version\"\r\n",
    "\r\n",
    "2.1\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"description\"\r\n",
    "\r\n",
    "A long description.\n\nWith lines.\n\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"pyversion\"\r\n",
    "\r\n",
    "source\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"filetype\"\r\n",
    "\r\n",
    "sdist\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"sha256_digest\"\r\n",
    "\r\n",
    "dd0d3260bc616360e04e0a6a571d8be1b44e5c80cda53815575ae61c155aaf00\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"blake2_256_digest\"\r\n",
    "\r\n",
    "f404af2229ca748ce6eb356d23b589674187427ac594b57d85c3b5ab4e5c46d8\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\":action\"\r\n",
    "\r\n",
    "file_upload\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"protocol_version\"\r\n",
    "\r\n",
    "1\r\n",
    "--fc054ba456bb4b47bfcb3af8d8cc2fc6\r\n",
    "Content-Disposition: form-data; name=\"content\"; filename=\"Bridle_Demo.Pkg-0.1.0.tar.gz\"\r\n",
    "Content-Type: application/octet-stream\r\n",
    "\r\n",
    "\x1f", // the sdist (gzip) starts here
)
.as_bytes();
