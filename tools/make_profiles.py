"""Regenerate the shipped profiles' LED geometry and default stacks.

Run ``python tools/make_profiles.py`` after changing the geometry; the YAML files it writes
under ``hardware_profiles/profiles/`` are what labs read and copy.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "hardware_profiles" / "profiles"


def _led(i: int, theta: float, phi: float, dist: float, on_plate_z: float | None = None) -> dict:
    t, p = math.radians(theta), math.radians(phi)
    if on_plate_z is not None:  # flat plate at fixed z
        r = on_plate_z * math.tan(t)
        x, y, z = r * math.cos(p), r * math.sin(p), on_plate_z
    else:  # on a dome of radius `dist`
        x, y, z = (
            dist * math.sin(t) * math.cos(p),
            dist * math.sin(t) * math.sin(p),
            dist * math.cos(t),
        )
    return {
        "id": i,
        "x_mm": round(x, 2),
        "y_mm": round(y, 2),
        "z_mm": round(z, 2),
        "color": "white",
    }


# Exposures and gains from `scope calibrate --profile pls43 --sim-sensor 640x400
# --max-exposure-ms 1000 --high-saturation 0.5` on the simulator's default (dry-mass, spectral)
# model: medians over the five arms and two reference fields, rounded. Brightfield, pls and
# low darkfield bring the brightest 0.1 % to 235 of 255; high darkfield saturates 0.5 % of the
# pixels. Darkfield light falls ~190x from 25° to 57°, so gain makes up the rest. Brightfield
# stays at 4 ms (calibration: 3.7 ms), which keeps glass near 209 DN and saturates < 0.5 %.
BF_MS = 4.0
HIGHRES_BF_MS = 110.0  # 100x: 25x smaller pixel area at the sample
PLS_MS = {6: 26.0, 10: 30.0, 18: 23.0}
DF_MS = {  # theta: ((low ms, low gain), (high ms, high gain))
    25: ((34.0, 1.0), (43.0, 1.0)),
    30: ((130.0, 1.0), (195.0, 1.0)),
    36: ((640.0, 1.0), (1000.0, 1.4)),
    43: ((1000.0, 1.4), (1000.0, 5.1)),
    50: ((1000.0, 3.2), (1000.0, 11.0)),
    57: ((1000.0, 6.5), (1000.0, 24.0)),
}


def pls43() -> dict:
    arm_thetas = [10.0, 18.0, 25.0, 30.0, 36.0, 43.0, 50.0, 57.0]
    arm_phis = [90.0 + 72.0 * k for k in range(5)]
    central = [(6.0, 90.0), (6.0, 210.0), (6.0, 330.0)]
    leds = [_led(i, t, p, 50.0, on_plate_z=50.0) for i, (t, p) in enumerate(central)]
    for a, phi in enumerate(arm_phis):
        for j, theta in enumerate(arm_thetas):
            leds.append(_led(3 + a * 8 + j, theta, phi, 50.0))
    na = 0.4

    def theta_of(led: dict) -> float:
        return math.degrees(math.atan2(math.hypot(led["x_mm"], led["y_mm"]), led["z_mm"]))

    bf_ids = [led["id"] for led in leds if math.sin(math.radians(theta_of(led))) <= na]
    stack = [
        {
            "name": "brightfield",
            "leds": bf_ids,
            "kind": "brightfield",
            "exposure_level": "single",
            "exposure_ms": BF_MS,
            "gain": 1.0,
            "brightness": 255,
        }
    ]
    singles = sorted(leds, key=lambda led: (round(theta_of(led), 1), led["id"]))
    for led in singles:
        th = theta_of(led)
        if math.sin(math.radians(th)) <= na:
            stack.append(
                {
                    "name": f"pls_{led['id']:02d}",
                    "leds": [led["id"]],
                    "kind": "pls",
                    "exposure_level": "single",
                    "exposure_ms": PLS_MS[round(th)],
                    "gain": 1.0,
                    "brightness": 255,
                }
            )
    for led in singles:
        th = theta_of(led)
        if math.sin(math.radians(th)) > na:
            low, high = DF_MS[round(th)]
            for level, (ms, gain) in (("high", high), ("low", low)):
                stack.append(
                    {
                        "name": f"df_{led['id']:02d}_{level}",
                        "leds": [led["id"]],
                        "kind": "darkfield",
                        "exposure_level": level,
                        "exposure_ms": ms,
                        "gain": gain,
                        "brightness": 255,
                    }
                )
    return {
        "name": "pls43",
        "description": (
            "The thesis instrument (Wulff 2022): 20x/0.4 and 100x/1.25 oil objectives, "
            "1920x1200 RGB camera with 5.86 µm pixels, 43 LEDs (3 central on a bottom plate "
            "at 6°, five arms 72° apart with 8 LEDs from 10° to 57°); 74-image stack."
        ),
        "optics": {
            "objectives": {
                "20x": {
                    "magnification": 20,
                    "na": 0.4,
                    "immersion_index": 1.0,
                    "pixel_size_um": 0.293,
                },
                "100x": {
                    "magnification": 100,
                    "na": 1.25,
                    "immersion_index": 1.515,
                    "pixel_size_um": 0.0586,
                    "brightfield_exposure_ms": HIGHRES_BF_MS,
                },
            },
            "scan_objective": "20x",
            "highres_objective": "100x",
        },
        "camera": {
            "name": "rgb-1920x1200",
            "sensor_width_px": 1920,
            "sensor_height_px": 1200,
            "rgb": True,
            "bit_depth": 8,
            "gain_property": "Gain",
            "gain_min": 1.0,
            "gain_max": 32.0,
            "neutral_gain": 1.0,
            "flip_x": False,
            "flip_y": False,
            "rotation_deg": 0,
        },
        "led_array": {
            "protocol": "illuminate",
            "serial": {"baudrate": 115200, "timeout_s": 2.0},
            "max_brightness": 255,
            "geometry_tolerance_mm": 0.05,
            "verify": True,
            "leds": leds,
        },
        "stack": stack,
        "connection": {"backend": "sim"},  # a demo profile: the built-in simulator
    }


# grid9x9 exposures from `scope calibrate --profile grid9x9 --sim-sensor 640x400
# --max-exposure-ms 1000` on the simulator's default model (one reference field; medians over
# the LEDs at the same distance from the centre, keyed by that distance² in pitches²).
GRID_BF_MS = 3.0
GRID_PLS_MS = {0: 11.0, 1: 12.0, 2: 17.0, 4: 14.0}
GRID_DF_MS = {  # distance² (pitches²): (ms, gain)
    5: (18.0, 1.0),
    8: (49.0, 1.0),
    9: (78.0, 1.0),
    10: (100.0, 1.0),
    13: (280.0, 1.0),
    16: (700.0, 1.0),
    17: (880.0, 1.0),
    18: (980.0, 1.0),
    20: (1000.0, 1.6),
    25: (1000.0, 2.6),
    32: (1000.0, 4.3),
}


def grid9x9() -> dict:
    pitch, dist, na = 6.0, 50.0, 0.25
    leds, i = [], 0
    for row in range(9):
        for col in range(9):
            x, y = (col - 4) * pitch, (row - 4) * pitch
            leds.append(
                {"id": i, "x_mm": round(x, 2), "y_mm": round(y, 2), "z_mm": dist, "color": "white"}
            )
            i += 1

    def theta_of(led: dict) -> float:
        return math.degrees(math.atan2(math.hypot(led["x_mm"], led["y_mm"]), led["z_mm"]))

    bf_ids = [led["id"] for led in leds if math.sin(math.radians(theta_of(led))) <= na]
    stack = [
        {
            "name": "brightfield",
            "leds": bf_ids,
            "kind": "brightfield",
            "exposure_level": "single",
            "exposure_ms": GRID_BF_MS,
            "gain": 1.0,
            "brightness": 255,
        }
    ]
    for led in sorted(leds, key=lambda led: (round(theta_of(led), 1), led["id"])):
        dark = math.sin(math.radians(theta_of(led))) > na
        ring = round((led["x_mm"] ** 2 + led["y_mm"] ** 2) / pitch**2)
        if not dark:
            stack.append(
                {
                    "name": f"pls_{led['id']:02d}",
                    "leds": [led["id"]],
                    "kind": "pls",
                    "exposure_level": "single",
                    "exposure_ms": GRID_PLS_MS[ring],
                    "gain": 1.0,
                    "brightness": 255,
                }
            )
        else:
            stack.append(
                {
                    "name": f"df_{led['id']:02d}_low",
                    "leds": [led["id"]],
                    "kind": "darkfield",
                    "exposure_level": "low",
                    "exposure_ms": GRID_DF_MS[ring][0],
                    "gain": GRID_DF_MS[ring][1],
                    "brightness": 255,
                }
            )
    return {
        "name": "grid9x9",
        "description": (
            "A planar 9x9 Illuminate-style LED grid (6 mm pitch) 50 mm below the sample under a "
            "10x/0.25 objective; every LED imaged once (darkfield at one exposure)."
        ),
        "optics": {
            "objectives": {
                "10x": {
                    "magnification": 10,
                    "na": 0.25,
                    "immersion_index": 1.0,
                    "pixel_size_um": 0.345,
                },
                "40x": {
                    "magnification": 40,
                    "na": 0.65,
                    "immersion_index": 1.0,
                    "pixel_size_um": 0.0863,
                    "brightfield_exposure_ms": 32.0,
                },
            },
            "scan_objective": "10x",
            "highres_objective": "40x",
        },
        "camera": {
            "name": "rgb-2048x1536",
            "sensor_width_px": 2048,
            "sensor_height_px": 1536,
            "rgb": True,
            "bit_depth": 8,
            "gain_property": "Gain",
            "gain_min": 1.0,
            "gain_max": 8.0,
            "neutral_gain": 1.0,
            "flip_x": False,
            "flip_y": False,
            "rotation_deg": 0,
        },
        "led_array": {
            "protocol": "illuminate",
            "serial": {"baudrate": 115200, "timeout_s": 2.0},
            "max_brightness": 255,
            "geometry_tolerance_mm": 0.05,
            "verify": True,
            "leds": leds,
        },
        "stack": stack,
        "connection": {"backend": "sim"},  # a demo profile: the built-in simulator
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for build in (pls43, grid9x9):
        data = build()
        header = f"# {data['name']}: generated by tools/make_profiles.py; edit there or copy.\n"
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
        (OUT / f"{data['name']}.yaml").write_text(header + text, encoding="utf-8")
        print(
            f"wrote {data['name']}.yaml: {len(data['led_array']['leds'])} LEDs, "
            f"{len(data['stack'])} channels"
        )


if __name__ == "__main__":
    main()
