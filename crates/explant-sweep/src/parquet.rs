//! A minimal Apache Parquet writer for the results table: one row group, one PLAIN,
//! uncompressed data page per column, required columns of 64-bit integers, doubles or
//! UTF-8 strings. Written from the format specification (parquet-format, Thrift compact
//! protocol for the metadata); read back by pyarrow and pandas in the tests.

/// A column of the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// 64-bit integers.
    Int(String, Vec<i64>),
    /// Doubles (NaN for missing values).
    Float(String, Vec<f64>),
    /// UTF-8 strings.
    Text(String, Vec<String>),
}

impl Column {
    fn name(&self) -> &str {
        match self {
            Column::Int(n, _) | Column::Float(n, _) | Column::Text(n, _) => n,
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Int(_, v) => v.len(),
            Column::Float(_, v) => v.len(),
            Column::Text(_, v) => v.len(),
        }
    }

    /// Parquet physical type: INT64 = 2, DOUBLE = 5, BYTE_ARRAY = 6.
    fn physical(&self) -> i32 {
        match self {
            Column::Int(..) => 2,
            Column::Float(..) => 5,
            Column::Text(..) => 6,
        }
    }

    /// PLAIN encoding of the values.
    fn plain(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Column::Int(_, v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Column::Float(_, v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Column::Text(_, v) => v.iter().for_each(|s| {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }),
        }
        out
    }
}

/// Thrift compact protocol, the parts Parquet metadata needs.
#[derive(Default)]
struct Thrift {
    out: Vec<u8>,
    last: Vec<i16>,
}

const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const STRUCT: u8 = 12;

impl Thrift {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn field(&mut self, id: i16, kind: u8) {
        let last = self.last.last().copied().unwrap_or(0);
        let delta = id - last;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | kind);
        } else {
            self.out.push(kind);
            self.zigzag(i64::from(id));
        }
        if let Some(l) = self.last.last_mut() {
            *l = id;
        }
    }

    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, I32);
        self.zigzag(i64::from(v));
    }

    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, I64);
        self.zigzag(v);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    fn string(&mut self, id: i16, s: &str) {
        self.field(id, BINARY);
        self.bytes(s.as_bytes());
    }

    fn list_header(&mut self, id: i16, elem: u8, n: usize) {
        self.field(id, LIST);
        if n < 15 {
            self.out.push(((n as u8) << 4) | elem);
        } else {
            self.out.push(0xF0 | elem);
            self.varint(n as u64);
        }
    }

    /// Begin a struct: as field `id` of the enclosing one, or at top level (`None`) or as
    /// a list element (`Some(0)` is not used; list elements call `begin_element`).
    fn begin(&mut self, id: Option<i16>) {
        if let Some(id) = id {
            self.field(id, STRUCT);
        }
        self.last.push(0);
    }

    fn end(&mut self) {
        self.out.push(0);
        self.last.pop();
    }
}

/// The table as a Parquet file. All columns must have the same length.
pub fn to_parquet(columns: &[Column]) -> Vec<u8> {
    let rows = columns.first().map_or(0, Column::len);
    let mut file = b"PAR1".to_vec();
    // One data page per column; remember where each starts and how big it is.
    let mut chunks = Vec::with_capacity(columns.len());
    for c in columns {
        let data = c.plain();
        let mut h = Thrift::default();
        h.begin(None);
        h.i32(1, 0); // DATA_PAGE
        h.i32(2, data.len() as i32);
        h.i32(3, data.len() as i32);
        h.begin(Some(5)); // DataPageHeader
        h.i32(1, rows as i32);
        h.i32(2, 0); // PLAIN
        h.i32(3, 3); // definition levels: RLE (none written: the column is required)
        h.i32(4, 3); // repetition levels: RLE (none written)
        h.end();
        h.end();
        let offset = file.len() as i64;
        let size = (h.out.len() + data.len()) as i64;
        file.extend_from_slice(&h.out);
        file.extend_from_slice(&data);
        chunks.push((offset, size));
    }

    let mut m = Thrift::default();
    m.begin(None);
    m.i32(1, 1); // version
    m.list_header(2, STRUCT, columns.len() + 1);
    // The root of the schema.
    m.begin(None);
    m.string(4, "schema");
    m.i32(5, columns.len() as i32);
    m.end();
    for c in columns {
        m.begin(None);
        m.i32(1, c.physical());
        m.i32(3, 0); // REQUIRED
        m.string(4, c.name());
        if let Column::Text(..) = c {
            m.i32(6, 0); // converted type UTF8
            m.begin(Some(10)); // LogicalType
            m.begin(Some(1)); // STRING
            m.end();
            m.end();
        }
        m.end();
    }
    m.i64(3, rows as i64);
    m.list_header(4, STRUCT, 1);
    m.begin(None); // RowGroup
    m.list_header(1, STRUCT, columns.len());
    for (c, &(offset, size)) in columns.iter().zip(&chunks) {
        m.begin(None); // ColumnChunk
        m.i64(2, offset);
        m.begin(Some(3)); // ColumnMetaData
        m.i32(1, c.physical());
        m.list_header(2, I32, 2);
        m.zigzag(0); // PLAIN
        m.zigzag(3); // RLE
        m.list_header(3, BINARY, 1);
        m.bytes(c.name().as_bytes());
        m.i32(4, 0); // UNCOMPRESSED
        m.i64(5, rows as i64);
        m.i64(6, size);
        m.i64(7, size);
        m.i64(9, offset);
        m.end();
        m.end();
    }
    m.i64(2, chunks.iter().map(|c| c.1).sum());
    m.i64(3, rows as i64);
    m.end();
    m.string(6, concat!("explant ", env!("CARGO_PKG_VERSION")));
    m.end();
    file.extend_from_slice(&m.out);
    file.extend_from_slice(&(m.out.len() as u32).to_le_bytes());
    file.extend_from_slice(b"PAR1");
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_protocol_encodes_as_the_spec_says() {
        let mut t = Thrift::default();
        t.begin(None);
        t.i32(1, -1); // header 0x15, zigzag(-1) = 1
        t.i64(3, 300); // delta 2: 0x26, zigzag(300) = 600 = 0xd8 0x04
        t.i32(20, 1); // delta 17 > 15: long form 0x05, zigzag(20) = 40, then 2
        t.end();
        assert_eq!(t.out, vec![0x15, 0x01, 0x26, 0xd8, 0x04, 0x05, 0x28, 0x02, 0x00]);
    }

    #[test]
    fn the_file_is_framed_by_magic_and_the_footer_length() {
        let f = to_parquet(&[
            Column::Float("x".into(), vec![1.0, 2.0]),
            Column::Text("s".into(), vec!["a".into(), "bc".into()]),
        ]);
        assert_eq!(&f[..4], b"PAR1");
        assert_eq!(&f[f.len() - 4..], b"PAR1");
        let len = u32::from_le_bytes(f[f.len() - 8..f.len() - 4].try_into().unwrap()) as usize;
        assert!(len > 20 && len < f.len() - 12);
    }
}
