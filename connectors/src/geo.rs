//! GCJ-02 ("Mars coordinates", the datum Chinese map SDKs return) → WGS-84.
//!
//! The forward WGS-84 → GCJ-02 offset is the published algorithm every Chinese map SDK
//! implements; there is no closed-form inverse, so we invert it by fixed-point iteration
//! (a few steps reach well under a centimetre). Written here because it is twenty lines of
//! arithmetic; the crates that offer it are unmaintained single-purpose ports.

const A: f64 = 6_378_245.0;
const EE: f64 = 0.006_693_421_622_965_943;

pub fn out_of_china(lat: f64, lon: f64) -> bool {
    !(72.004..=137.8347).contains(&lon) || !(0.8293..=55.8271).contains(&lat)
}

fn transform_lat(x: f64, y: f64) -> f64 {
    use std::f64::consts::PI;
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

fn transform_lon(x: f64, y: f64) -> f64 {
    use std::f64::consts::PI;
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

/// WGS-84 → GCJ-02 (lat, lon).
pub fn wgs84_to_gcj02(lat: f64, lon: f64) -> (f64, f64) {
    use std::f64::consts::PI;
    if out_of_china(lat, lon) {
        return (lat, lon);
    }
    let dlat = transform_lat(lon - 105.0, lat - 35.0);
    let dlon = transform_lon(lon - 105.0, lat - 35.0);
    let radlat = lat / 180.0 * PI;
    let magic = 1.0 - EE * radlat.sin() * radlat.sin();
    let sqrt_magic = magic.sqrt();
    let dlat = (dlat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrt_magic) * PI);
    let dlon = (dlon * 180.0) / (A / sqrt_magic * radlat.cos() * PI);
    (lat + dlat, lon + dlon)
}

/// GCJ-02 → WGS-84 (lat, lon), by iterating the forward offset.
pub fn gcj02_to_wgs84(lat: f64, lon: f64) -> (f64, f64) {
    if out_of_china(lat, lon) {
        return (lat, lon);
    }
    let (mut wlat, mut wlon) = (lat, lon);
    for _ in 0..30 {
        let (glat, glon) = wgs84_to_gcj02(wlat, wlon);
        let (dlat, dlon) = (glat - lat, glon - lon);
        wlat -= dlat;
        wlon -= dlon;
        if dlat.abs() < 1e-10 && dlon.abs() < 1e-10 {
            break;
        }
    }
    (wlat, wlon)
}

/// Great-circle distance in metres.
pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let r = 6_371_008.8;
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = (b.0 - a.0).to_radians();
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * r * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_hundreds_of_metres_and_the_inverse_undoes_it() {
        // Rongcheng: the GCJ-02 offset is several hundred metres there.
        let wgs = (37.165, 122.42);
        let gcj = wgs84_to_gcj02(wgs.0, wgs.1);
        let offset = haversine_m(wgs, gcj);
        assert!(offset > 100.0 && offset < 1000.0, "offset {offset} m");
        let back = gcj02_to_wgs84(gcj.0, gcj.1);
        assert!(
            haversine_m(wgs, back) < 0.01,
            "round trip {} m",
            haversine_m(wgs, back)
        );
    }

    #[test]
    fn the_round_trip_is_within_5_m_over_the_whole_county() {
        let mut worst: f64 = 0.0;
        for i in 0..50 {
            for j in 0..50 {
                let wgs = (
                    36.8 + 0.4 * f64::from(i) / 49.0,
                    122.2 + 0.5 * f64::from(j) / 49.0,
                );
                let gcj = wgs84_to_gcj02(wgs.0, wgs.1);
                worst = worst.max(haversine_m(wgs, gcj02_to_wgs84(gcj.0, gcj.1)));
            }
        }
        eprintln!("GCJ-02 round trip over Rongcheng, 2,500 points: worst {worst:.3e} m");
        assert!(worst < 5.0, "worst round trip {worst} m");
    }

    #[test]
    fn outside_china_nothing_moves() {
        assert_eq!(gcj02_to_wgs84(48.85, 2.35), (48.85, 2.35));
    }
}
