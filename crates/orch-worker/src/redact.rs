//! The secret scanner: redacts known token formats, private keys and the values of environment
//! variables marked secret, from every log and bundle file before it is stored.

use std::collections::BTreeMap;

/// Redacts secrets. Cheap to clone; build one per run.
#[derive(Debug, Clone)]
pub struct Redactor {
    _private: (),
}

impl Redactor {
    /// A redactor for the known token formats plus these literal secret values (values shorter
    /// than 4 bytes are ignored: they would redact ordinary text).
    pub fn new(secret_values: &[String]) -> Redactor {
        let _ = secret_values;
        todo!("Redactor::new")
    }

    /// Redact a whole buffer. Returns the redacted bytes and the count per kind of secret
    /// (`github_token`, `private_key`, `env:NAME`, ...).
    pub fn redact(&self, input: &[u8]) -> (Vec<u8>, BTreeMap<String, u64>) {
        let _ = input;
        todo!("Redactor::redact")
    }

    /// A streaming redactor for output that arrives in chunks (a secret may be split across
    /// chunks; a private key spans lines).
    pub fn stream(&self) -> StreamRedactor {
        todo!("Redactor::stream")
    }
}

/// Redacts a byte stream chunk by chunk. Output is released line by line (or in pieces of a
/// bounded size for very long lines), so memory stays bounded whatever the input.
#[derive(Debug)]
pub struct StreamRedactor {
    _private: (),
}

impl StreamRedactor {
    /// Feed a chunk; returns the redacted bytes that are ready to be written.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let _ = chunk;
        todo!("StreamRedactor::push")
    }

    /// End of stream: returns whatever is still held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        todo!("StreamRedactor::finish")
    }

    /// Redactions made so far: kind -> count.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        todo!("StreamRedactor::counts")
    }
}
