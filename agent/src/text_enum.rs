//! Enums stored and sent as text (`"RUNNING"`, `"Production"`, `"up_for_retry"`): one macro
//! gives each its spelling, parsing that names the choices, and `Display`.

/// A value that is none of an enum's spellings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {}", known.join(", "))]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub known: Vec<&'static str>,
}

/// `text_enum!(Name { Variant = "text", … })`: a `Copy` enum with `ALL`, `as_str`,
/// case-insensitive `FromStr` (erring with [`UnknownValue`]) and `Display`.
#[macro_export]
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::text_enum::UnknownValue;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
                    $crate::text_enum::UnknownValue {
                        kind: stringify!($name),
                        value: s.to_owned(),
                        known: $name::ALL.iter().map(|v| v.as_str()).collect(),
                    }
                })
            }
        }
    };
}
