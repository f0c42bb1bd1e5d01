"""Config of the tiny remote-code VLM (``tiny_modern.build_tiny_remote_code``): a checkpoint that ships
its own modeling file, like Qwen-VL v1 or InternVL2 before the ``-hf`` conversions."""

from transformers import PretrainedConfig


class TinyRemoteConfig(PretrainedConfig):
    model_type = "tiny_remote_vlm"

    def __init__(self, vocab_size=96, hidden_size=32, num_hidden_layers=18, num_attention_heads=4, image_size=112,
                 patch_size=14, image_token_id=4, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.image_size = image_size
        self.patch_size = patch_size
        self.image_token_id = image_token_id
        super().__init__(**kwargs)
