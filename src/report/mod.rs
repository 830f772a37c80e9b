//! What a user looks at: HTML tables that render in Jupyter ([`display`]) and SVG figures
//! ([`plot`], behind the `plot` feature).

pub mod display;
#[cfg(feature = "plot")]
pub mod plot;
