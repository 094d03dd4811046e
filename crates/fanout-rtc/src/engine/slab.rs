//! A slab with generational keys: per-connection state lives at a stable index, so the router's
//! outputs can name a connection by index and reach it without a hash lookup; the generation makes
//! a key of a removed entry miss instead of hitting its successor.

/// A key into a [`Slab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub index: u32,
    pub generation: u32,
}

impl Key {
    /// Packs the key into 48 bits (index, then the generation's low 16 bits), leaving the low 16
    /// bits of a u64 id for a sub-index.
    pub fn pack(self, sub: u16) -> u64 {
        (u64::from(self.index) << 32) | (u64::from(self.generation & 0xffff) << 16) | u64::from(sub)
    }

    /// The inverse of [`Key::pack`]; the generation comes back as its low 16 bits, which
    /// [`Slab::get_packed`] compares.
    pub fn unpack(id: u64) -> (u32, u16, u16) {
        ((id >> 32) as u32, (id >> 16) as u16, id as u16)
    }
}

enum Entry<T> {
    Occupied { generation: u32, value: T },
    Vacant { generation: u32 },
}

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.entries[index as usize];
            let generation = match slot {
                Entry::Vacant { generation } => generation.wrapping_add(1),
                Entry::Occupied { generation, .. } => generation.wrapping_add(1),
            };
            *slot = Entry::Occupied { generation, value };
            return Key { index, generation };
        }
        let index = self.entries.len() as u32;
        self.entries.push(Entry::Occupied {
            generation: 0,
            value,
        });
        Key {
            index,
            generation: 0,
        }
    }

    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.entries.get_mut(key.index as usize)?;
        match slot {
            Entry::Occupied { generation, .. } if *generation == key.generation => {
                let generation = *generation;
                let old = std::mem::replace(slot, Entry::Vacant { generation });
                self.free.push(key.index);
                self.len -= 1;
                match old {
                    Entry::Occupied { value, .. } => Some(value),
                    Entry::Vacant { .. } => None,
                }
            }
            _ => None,
        }
    }

    pub fn get(&self, key: Key) -> Option<&T> {
        match self.entries.get(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.entries.get_mut(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The entry a packed id names, if its generation still matches (16 bits of it).
    pub fn get_packed_mut(&mut self, id: u64) -> Option<(Key, &mut T)> {
        let (index, generation, _) = Key::unpack(id);
        match self.entries.get_mut(index as usize)? {
            Entry::Occupied {
                generation: g,
                value,
            } if *g as u16 == generation => Some((
                Key {
                    index,
                    generation: *g,
                },
                value,
            )),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.entries
            .iter_mut()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Entry::Occupied { generation, value } => Some((
                    Key {
                        index: i as u32,
                        generation: *generation,
                    },
                    value,
                )),
                Entry::Vacant { .. } => None,
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Entry::Occupied { generation, value } => Some((
                    Key {
                        index: i as u32,
                        generation: *generation,
                    },
                    value,
                )),
                Entry::Vacant { .. } => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_key_misses_its_successor() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        let c = s.insert("c");
        assert_eq!(c.index, a.index, "the slot is reused");
        assert_eq!(s.get(a), None, "the old key misses");
        assert_eq!(s.get(c), Some(&"c"));
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.len(), 2);
        let id = c.pack(7);
        assert_eq!(Key::unpack(id).2, 7);
        assert_eq!(s.get_packed_mut(id).map(|(k, v)| (k, *v)), Some((c, "c")));
        assert_eq!(s.get_packed_mut(a.pack(7)).map(|(_, v)| *v), None);
        assert_eq!(s.iter().map(|(_, v)| *v).collect::<Vec<_>>(), ["c", "b"]);
    }
}
