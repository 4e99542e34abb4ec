//! A definition named by its kind key, as the original Ick's files name
//! them (`pipeline: construct` beside its fields), read as `name:`.

use std::fmt;
use std::marker::PhantomData;

use ick_api::controller::{PipelineSpec, ProjectSpec};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Which key names an entry of each kind (beside `name:`).
pub(crate) trait KindKey {
    const KEY: &'static str;
}

impl KindKey for PipelineSpec {
    const KEY: &'static str = "pipeline";
}

impl KindKey for ProjectSpec {
    const KEY: &'static str = "project";
}

/// A spec whose kind key (`pipeline:`/`project:`) is read as `name:`, so
/// that the spec's own strict parser (unknown fields refused) does the rest
/// and serde_yaml locates its mistakes in the file.
pub(crate) struct Entry<T>(pub T);

impl<'de, T: Deserialize<'de> + KindKey> Deserialize<'de> for Entry<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + KindKey> Visitor<'de> for EntryVisitor<T> {
            type Value = Entry<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} definition (a map)", T::KEY)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry<T>, A::Error> {
                let renamed = Renamed {
                    inner: map,
                    key: T::KEY,
                };
                T::deserialize(de::value::MapAccessDeserializer::new(renamed)).map(Entry)
            }
        }
        deserializer.deserialize_map(EntryVisitor(PhantomData))
    }
}

struct Renamed<A> {
    inner: A,
    key: &'static str,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Renamed<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(RenameKey {
            seed,
            key: self.key,
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// Reads a key, renamed, from within serde_yaml's own visit of it, so that
/// an error about the key (`unknown field`) carries the key's position.
struct RenameKey<K> {
    seed: K,
    key: &'static str,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for RenameKey<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for RenameKey<K> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<K::Value, E> {
        let key = if key == self.key { "name" } else { key };
        self.seed
            .deserialize(de::value::StringDeserializer::<E>::new(key.to_string()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Collection {
    #[serde(default)]
    pub pipelines: Vec<Entry<PipelineSpec>>,
    #[serde(default)]
    pub projects: Vec<Entry<ProjectSpec>>,
}
