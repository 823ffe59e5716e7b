"""Calibration for all-MiniLM-L6-v2's checkpoint: 127 sentences of its own, and the input moments.

The sentences share none with `minilm.SENTENCES` (the 54 the tests and benchmarks measure cosine on),
so figures computed with these moments are held out. `input_moments` runs the re-declared encoder on
them and returns, for each of the 36 encoder Linear weights (safetensors names), the second moment
E[x x^T] of its input over the real (unpadded) tokens: what `dcz compress CKPT --calib MOMENTS.npz`
refits the codebooks with (compressor/refit.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.bench import minilm


def linear_weights() -> dict[str, str]:
    """Our module name -> the safetensors weight name, for the encoder's Linear layers."""
    return {
        f"layers.{i}.{ours}": f"encoder.layer.{i}.{theirs}.weight"
        for i in range(minilm.LAYERS)
        for theirs, ours in minilm._LAYER.items()
        if "LayerNorm" not in theirs
    }


def input_moments(sentences: list[str] | None = None, length: int = 32) -> dict[str, np.ndarray]:
    """{safetensors weight name: E[x x^T] float32 (in, in)} of each encoder Linear's input."""
    import torch

    ids, mask = minilm.tokenize(sentences or CALIBRATION, length)
    model, names = minilm.load_model(), linear_weights()
    real = torch.from_numpy(mask.astype(bool))
    sums: dict[str, list] = {}

    def hook(name):
        def add(module, inputs, output):
            x = inputs[0][real].double()
            total = sums.setdefault(name, [0.0, 0])
            total[0] = total[0] + x.T @ x
            total[1] += x.shape[0]

        return add

    handles = [m.register_forward_hook(hook(names[n])) for n, m in model.named_modules() if n in names]
    try:
        with torch.no_grad():
            model(torch.from_numpy(ids), torch.from_numpy(mask))
    finally:
        for handle in handles:
            handle.remove()
    return {name: (s / n).float().numpy() for name, (s, n) in sums.items()}


def write_moments(path: Path, sentences: list[str] | None = None) -> Path:
    np.savez(path, **input_moments(sentences))
    return Path(path)


CALIBRATION = [
    "The committee will publish its findings in the spring.",
    "Two hikers were rescued after spending the night on the glacier.",
    "Can you recommend a good Italian restaurant near the station?",
    "The algorithm sorts the list in linear time when the keys are small integers.",
    "Inflation slowed for the third month in a row.",
    "My brother repairs old motorcycles in his garage.",
    "The concert was cancelled because the singer had a cold.",
    "Photosynthesis converts sunlight into chemical energy.",
    "Why does the sky look blue during the day?",
    "The airline lost my suitcase on the way to Tokyo.",
    "A thunderstorm knocked out power across the city.",
    "The professor graded the exams over the weekend.",
    "Add salt to the water before boiling the pasta.",
    "The referee showed the defender a red card.",
    "Our neighbours painted their fence bright yellow.",
    "The spacecraft sent back pictures of Jupiter's moons.",
    "He apologised for arriving late to the meeting.",
    "The hospital hired twenty new nurses this year.",
    "Where can I buy tickets for the football match?",
    "The bridge was closed for repairs until next month.",
    "Lions usually hunt at night in the savanna.",
    "The company reported record profits in the last quarter.",
    "She knitted a warm scarf for her grandson.",
    "The volcano erupted and covered the island in ash.",
    "This function returns null when the file does not exist.",
    "The parliament passed a new law on data protection.",
    "We planted an apple tree in the backyard.",
    "The marathon runners crossed the finish line exhausted.",
    "A sudden frost damaged the vineyards in the valley.",
    "The pianist performed a sonata by Beethoven.",
    "The bakery on the corner sells excellent croissants.",
    "Scientists measured the temperature of the deep ocean.",
    "The kids built a sandcastle near the waves.",
    "Unemployment dropped to its lowest level in a decade.",
    "He lost his keys somewhere in the shopping mall.",
    "The novel tells the story of a family during the war.",
    "The database query took several minutes to finish.",
    "My phone battery dies before the end of the day.",
    "The farmers harvested the wheat before the rain.",
    "Tourists crowded the square to watch the parade.",
    "The mayor promised to build more bike lanes.",
    "She studies marine biology at the university.",
    "The old castle is said to be haunted.",
    "Please send me the report by the end of the week.",
    "The goalkeeper saved a penalty in the final minute.",
    "Researchers developed a cheaper battery for electric buses.",
    "The cat knocked a glass of water off the table.",
    "The documentary follows penguins through the Antarctic winter.",
    "Is it safe to drink the tap water here?",
    "The painter used bold colours and thick brush strokes.",
    "Earthquakes are common along the edges of tectonic plates.",
    "He ordered a large pizza with extra cheese.",
    "The court ruled in favour of the workers' union.",
    "The telescope detected light from a distant galaxy.",
    "Our internet connection keeps dropping every evening.",
    "The choir sang carols in the old cathedral.",
    "The dentist told me to floss more often.",
    "Wildfires spread quickly because of the dry wind.",
    "The programmer fixed the memory leak in the parser.",
    "A flock of geese flew south over the lake.",
    "The hotel room had a view of the harbour.",
    "The government announced new taxes on tobacco.",
    "My sister is learning to drive this summer.",
    "The chemistry experiment produced a green gas.",
    "The stadium was full for the opening ceremony.",
    "Fishermen returned to port with an empty net.",
    "The recipe needs three eggs and a cup of sugar.",
    "The senator resigned after the scandal.",
    "The puppy chewed the leg of the kitchen chair.",
    "Ancient Romans built aqueducts to carry water.",
    "The exam results will be posted online tomorrow.",
    "A large truck blocked the narrow street.",
    "The startup's app helps people split restaurant bills.",
    "He plays chess with his grandfather every Sunday.",
    "The storm delayed all ferries to the islands.",
    "The vaccine trial enrolled thousands of volunteers.",
    "Our team lost the match on penalties.",
    "The museum bought a painting by a Dutch master.",
    "Heat the oven to two hundred degrees.",
    "The encryption key is stored in a hardware module.",
    "The children fed the ducks at the pond.",
    "The price of gold reached a new high.",
    "She is writing a biography of a famous physicist.",
    "The glacier has retreated several kilometres since 1900.",
    "What time does the pharmacy close on Saturdays?",
    "The engineers tested the bridge with heavy loads.",
    "The band released their first album in 1998.",
    "A fox crept into the henhouse during the night.",
    "The school introduced free lunches for all pupils.",
    "The compiler reports an error on line forty-two.",
    "They celebrated their anniversary in Paris.",
    "The river is too polluted for swimming.",
    "The orchestra's conductor retired after thirty years.",
    "My laptop overheats when I play video games.",
    "The police arrested two suspects after the robbery.",
    "The garden is full of roses and lavender.",
    "Astronauts grew lettuce on the space station.",
    "The central bank kept interest rates unchanged.",
    "He ran out of petrol on the motorway.",
    "The library lends e-books as well as printed ones.",
    "Migrating birds navigate using the Earth's magnetic field.",
    "The waiter brought us the wrong dessert.",
    "The new stadium will seat sixty thousand fans.",
    "The poem describes a lonely winter evening.",
    "Clouds gathered over the hills in the afternoon.",
    "The client wants a refund for the broken heater.",
    "The mathematician proved the conjecture after a decade.",
    "Kids in the village walk two miles to school.",
    "The ship sank near the coast in a storm.",
    "The meeting was moved to the larger conference room.",
    "Tomatoes ripen faster in warm weather.",
    "The hackers stole millions of passwords.",
    "Our train was cancelled because of a strike.",
    "The nurse checked the patient's blood pressure.",
    "The wedding took place in a small chapel.",
    "The moon looked enormous above the horizon.",
    "The shop offers a discount to students.",
    "A new bakery opened next to the post office.",
    "The economy grew faster than economists expected.",
    "He keeps a diary of every place he visits.",
    "The elephants walked slowly towards the water hole.",
    "Remember to back up your files before updating.",
    "The festival attracts artists from around the world.",
    "She won a scholarship to study in Canada.",
    "The wind blew the umbrella inside out.",
    "The robot vacuum cleaner got stuck under the sofa.",
    "How many calories are in a banana?",
]
