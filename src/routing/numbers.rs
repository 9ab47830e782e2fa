//! A compact exact-number index.
//!
//! Dialled numbers are short strings over `0-9 + * #`. Up to 16 such characters pack into one
//! `u64` (4 bits each, 0 meaning "no character"), so an entry is a packed key and a callflow
//! index: 12 bytes, stored inline in an open-addressing table at ~80% load. A million numbers
//! take about 15 MB (a general string map needs about 60 MB), which keeps the table in the
//! CPU caches and makes a lookup one memory access instead of two or three. Numbers that do
//! not pack (other characters, longer than 16) live in an ordinary map beside it.

use compact_str::CompactString;
use hashbrown::HashMap;

/// Load factor of the packed table.
const LOAD: f64 = 0.8;

/// One slot: packed number (0 = empty) and callflow index. `packed(4)` keeps it at 12 bytes;
/// fields are only ever read by value.
#[derive(Clone, Copy, Default)]
#[repr(C, packed(4))]
struct Slot {
    key: u64,
    value: u32,
}

/// Packs a number into 4-bit codes, or `None` if it has another character or is too long.
pub fn pack(number: &str) -> Option<u64> {
    let bytes = number.as_bytes();
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut key = 0u64;
    for &b in bytes {
        let code = match b {
            b'0'..=b'9' => b - b'0' + 1,
            b'+' => 11,
            b'*' => 12,
            b'#' => 13,
            _ => return None,
        };
        key = (key << 4) | u64::from(code);
    }
    Some(key)
}

/// The string a packed key came from.
pub fn unpack(mut key: u64) -> String {
    let mut out = Vec::with_capacity(16);
    while key != 0 {
        let c = match (key & 0xF) as u8 {
            code @ 1..=10 => b'0' + code - 1,
            11 => b'+',
            12 => b'*',
            _ => b'#',
        };
        out.push(c);
        key >>= 4;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[derive(Default)]
pub struct NumberMap {
    slots: Vec<Slot>,
    /// Per-table seed mixed into the hash, so crafted numbers cannot be aimed at one bucket.
    seed: u64,
    other: HashMap<CompactString, u32>,
    len: usize,
}

impl std::fmt::Debug for NumberMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberMap")
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl NumberMap {
    /// Builds the map; a later duplicate number replaces an earlier one.
    pub fn build(entries: impl IntoIterator<Item = (String, u32)>) -> Self {
        let mut packed = Vec::new();
        let mut other = HashMap::new();
        for (number, value) in entries {
            match pack(&number) {
                Some(key) => packed.push((key, value)),
                None => {
                    other.insert(CompactString::from(number), value);
                }
            }
        }
        let capacity = ((packed.len() as f64 / LOAD) as usize).max(8) + 1;
        let mut map = Self {
            slots: vec![Slot::default(); capacity],
            seed: rand::random::<u64>() | 1,
            other,
            len: 0,
        };
        for (key, value) in packed {
            map.insert_packed(key, value);
        }
        map.len += map.other.len();
        map
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Multiply-xorshift mix, then a multiply-high range reduction (no power-of-two size).
        let mut h = (key ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    fn insert_packed(&mut self, key: u64, value: u32) {
        let n = self.slots.len();
        let mut i = self.home(key);
        loop {
            let slot = self.slots[i];
            let existing = slot.key;
            if existing == 0 {
                self.slots[i] = Slot { key, value };
                self.len += 1;
                return;
            }
            if existing == key {
                self.slots[i] = Slot { key, value };
                return;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    #[inline]
    pub fn get(&self, number: &str) -> Option<u32> {
        let Some(key) = pack(number) else {
            return self.other.get(number).copied();
        };
        let n = self.slots.len();
        let mut i = self.home(key);
        loop {
            let slot = self.slots[i];
            let (k, v) = (slot.key, slot.value);
            if k == key {
                return Some(v);
            }
            if k == 0 {
                return None;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (String, u32)> + '_ {
        self.slots
            .iter()
            .filter_map(|s| {
                let (k, v) = (s.key, s.value);
                (k != 0).then(|| (unpack(k), v))
            })
            .chain(self.other.iter().map(|(k, v)| (k.to_string(), *v)))
    }

    /// Approximate bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>() + self.other.len() * 40
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for n in [
            "+14155550100",
            "1000",
            "*97",
            "#",
            "0",
            "+123456789012345",
            "0000",
        ] {
            assert_eq!(unpack(pack(n).unwrap()), n);
        }
        assert_eq!(pack(""), None);
        assert_eq!(pack("no_match"), None);
        assert_eq!(pack("12345678901234567"), None, "17 characters");
        assert_ne!(pack("0"), pack("00"), "leading zeros count");
    }

    #[test]
    fn lookups_find_packed_and_other_numbers() {
        let mut entries: Vec<(String, u32)> =
            (0..5000).map(|i| (format!("+1415{i:07}"), i)).collect();
        entries.push(("no_match".into(), 9999));
        entries.push(("sip:alice".into(), 7));
        let map = NumberMap::build(entries.clone());
        assert_eq!(map.len(), entries.len());
        for (n, v) in &entries {
            assert_eq!(map.get(n), Some(*v), "{n}");
        }
        assert_eq!(map.get("+14159999999"), None);
        assert_eq!(map.get("unknown"), None);
        let mut all: Vec<(String, u32)> = map.iter().collect();
        all.sort();
        let mut want = entries;
        want.sort();
        assert_eq!(all, want);
        assert!(NumberMap::build(Vec::new()).get("1").is_none());
    }

    #[test]
    fn a_repeated_number_keeps_the_last_value() {
        let map = NumberMap::build(vec![("1000".to_string(), 1), ("1000".to_string(), 2)]);
        assert_eq!((map.get("1000"), map.len()), (Some(2), 1));
    }
}
