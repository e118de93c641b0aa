//! A bounds-checked reader over a byte slice: every read returns `None`
//! past the end instead of panicking.

#[derive(Debug)]
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a one-byte length prefix, as a sub-reader.
    pub(super) fn vec8(&mut self) -> Option<Reader<'a>> {
        let len = self.u8()?;
        self.take(usize::from(len)).map(Reader::new)
    }

    /// A vector with a two-byte length prefix, as a sub-reader.
    pub(super) fn vec16(&mut self) -> Option<Reader<'a>> {
        let len = self.u16()?;
        self.take(usize::from(len)).map(Reader::new)
    }

    pub(super) fn len(&self) -> usize {
        self.rest.len()
    }

    pub(super) fn rest(&self) -> &'a [u8] {
        self.rest
    }
}
