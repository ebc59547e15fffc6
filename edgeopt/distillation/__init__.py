"""Knowledge distillation into mobile students (MobileNetV2, MobileNetV3, ShuffleNetV2)."""
