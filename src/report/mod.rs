//! Reports of facts for people: [`html`], one self-contained page of swimlanes and charts.

pub mod html;
