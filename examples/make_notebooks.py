"""Write examples/tutorial_en.ipynb and examples/tutorial_pt.ipynb from one source.

The two notebooks share every code cell; only the text differs (English / Brazilian
Portuguese), including the strings inside the code (plot titles, printed messages),
written ``<<English::Português>>`` in the templates below. Edit this file, then run
``python examples/make_notebooks.py --execute``: it writes both notebooks and runs them
(a real run, a few CPU minutes each, without the ISBI 2012 data, as in a fresh clone),
storing their outputs, figures included, so that they read complete on the web. Without
``--execute`` it rewrites the cells and keeps the stored outputs while the code cells are
unchanged (a text-only edit), drops them otherwise.

The tests (tests/test_notebooks.py) check that the committed cells are current with this
file and hold outputs (figures, no errors), and execute both notebooks again, in memory,
with ``UNETLAB_FAST=1`` (a few training steps).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

# (kind, English, Portuguese); for code cells the two texts are the same string.
CELLS: list[tuple[str, str, str]] = []


def md(en: str, pt: str) -> None:
    CELLS.append(("markdown", en.strip(), pt.strip()))


#: ``<<English::Português>>`` inside a code template: the text of each language
BILINGUAL = re.compile(r"<<(.*?)::(.*?)>>")


def code(source: str) -> None:
    source = source.strip()
    CELLS.append(("code", BILINGUAL.sub(r"\1", source), BILINGUAL.sub(r"\2", source)))


md("""
# U-Net in practice: train, look, compare

This notebook follows the course chapter on U-Net with the `unetlab` library. You will

1. look at a segmentation dataset (synthetic electron-microscopy membranes: no download),
2. train a small U-Net with the project's training loop and look at its predictions,
3. predict a large image tile by tile (the overlap-tile strategy),
4. train on the real ISBI 2012 slices, when they are present on this machine,
5. look inside an Attention U-Net: its attention maps,
6. compare the upsampling methods: transposed convolution, max-unpooling, interpolation.

The whole notebook runs on a CPU in under ten minutes (9.6 min measured on a busy
2-core machine, 4 of them for ISBI 2012). The environment variable `UNETLAB_FAST=1`
(set by the tests) makes every training run only a few steps; the code is the same.
The chapters in `docs/course/` explain each step in depth.

*The outputs stored in this file come from a real run (not `UNETLAB_FAST`) on a 2-core
CPU shared with other jobs (0.9 to 2.6 min for the whole notebook), made by
`python examples/make_notebooks.py --execute` without the ISBI 2012 data (as in a fresh
clone of the repository, so section 4 only says it skips). The first training also has a
150 s time budget: on a slower machine it stops earlier, with other numbers.*
""", """
# U-Net na prática: treinar, observar, comparar

Este notebook acompanha o capítulo do curso sobre a U-Net usando a biblioteca `unetlab`.
Você vai

1. conhecer um conjunto de dados de segmentação (membranas sintéticas de microscopia
   eletrônica: nada para baixar),
2. treinar uma U-Net pequena com o loop de treinamento do projeto e ver as predições,
3. fazer a predição de uma imagem grande em blocos (a estratégia de *overlap-tile*),
4. treinar com as fatias reais do ISBI 2012, se elas estiverem nesta máquina,
5. olhar por dentro de uma Attention U-Net: os mapas de atenção,
6. comparar os métodos de upsampling: convolução transposta, max-unpooling e interpolação.

O notebook inteiro roda em CPU em menos de dez minutos (9,6 min medidos numa máquina de
2 núcleos ocupada, 4 deles para o ISBI 2012). A variável de ambiente `UNETLAB_FAST=1` (usada
pelos testes) faz cada treino rodar só alguns passos; o código é o mesmo.
Os capítulos em `docs/curso/` explicam cada etapa em detalhe.

*As saídas guardadas neste arquivo vêm de uma execução real (sem `UNETLAB_FAST`) numa CPU
de 2 núcleos compartilhada com outros processos (de 0,9 a 2,6 min para o notebook inteiro),
feita por `python examples/make_notebooks.py --execute` sem os dados do ISBI 2012 (como num
clone novo do repositório; por isso a seção 4 só avisa que fica de fora). O primeiro treino
também tem um limite de 150 s: numa máquina mais lenta ele para antes, com outros números.*
""")

code("""
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import unetlab


def show(fig):
    # display, whatever matplotlib backend is active (the trainer may have switched it)
    display(fig)
    plt.close(fig)


FAST = os.environ.get("UNETLAB_FAST") == "1"   # the tests set it: a few steps per training
torch.manual_seed(0)
print("unetlab", unetlab.__version__, "| torch", torch.__version__, "| fast:", FAST)
print("models:", ", ".join(unetlab.list_models()))
""")

md("""
## 1. The data: one class per pixel

Semantic segmentation classifies **every pixel**. A dataset item is a dict with an
`image` (float tensor `C x H x W`) and a `mask` (integer tensor `H x W`, one class id per
pixel). Here class 1 is the membrane (the thin dark walls between cells), class 0 the
cell interior, as in the ISBI 2012 EM segmentation challenge. (The 2012 challenge itself
was won by IDSIA's network, Ciresan et al.; the U-Net paper, in 2015, reported the best
score on the challenge's still-open leaderboard.)
""", """
## 1. Os dados: uma classe por pixel

A segmentação semântica classifica **cada pixel**. Cada item do conjunto de dados é um
dicionário com uma `image` (tensor float `C x H x W`) e uma `mask` (tensor inteiro
`H x W`, com o id da classe de cada pixel). Aqui a classe 1 é a membrana (as paredes
escuras e finas entre as células) e a classe 0 é o interior da célula, como no desafio
de segmentação de microscopia eletrônica do ISBI 2012. (Quem venceu o desafio em 2012
foi a rede do IDSIA, de Ciresan et al.; o artigo da U-Net, de 2015, obteve o melhor
resultado no ranking do desafio, que continuou aberto a novas submissões.)
""")

code("""
from unetlab.data import build_dataset

size = 64 if FAST else 128
train_set = build_dataset("membranes", split="train", num_images=32, size=size)
item = train_set[0]
print({k: (tuple(v.shape), str(v.dtype)) if hasattr(v, "shape") else v for k, v in item.items()})
print("classes:", train_set.class_names, "| membrane fraction:", float(item["mask"].float().mean()))

fig, axes = plt.subplots(2, 4, figsize=(10, 5))
for i in range(4):
    sample = train_set[i]
    axes[0, i].imshow(sample["image"][0], cmap="gray")
    axes[1, i].imshow(sample["mask"], cmap="gray_r", interpolation="nearest")
    axes[0, i].set_title(sample["name"], fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
show(fig)
""")

md("""
## 2. Train a U-Net

`unetlab.training.train` runs the loop of the course — forward, loss, `zero_grad`,
backward, step (read it in `src/unetlab/training/trainer.py`, `Trainer.train_step`) —
plus validation and checkpoints. A run is described by a config; here we start from the
built-in default (synthetic membranes) and override a few keys. The loss is Dice +
cross-entropy, the model a 3-level U-Net with 16-32-64 channels.
""", """
## 2. Treinar uma U-Net

`unetlab.training.train` executa o loop do curso — forward, perda, `zero_grad`,
backward, step (leia em `src/unetlab/training/trainer.py`, `Trainer.train_step`) —
além de validação e checkpoints. Um treino é descrito por uma configuração; aqui
partimos do padrão embutido (membranas sintéticas) e mudamos algumas chaves. A perda é
Dice + entropia cruzada, e o modelo é uma U-Net de 3 níveis com 16-32-64 canais.
""")

code("""
from unetlab.config import load_config
from unetlab.training import train

overrides = [
    "model.name=unet", "model.options.channels=[16,32,64]",
    f"data.options.size={size}", "data.val_options.num_images=4",
    "train.progress=false", "train.out_dir=runs/tutorial_unet", "train.val_every=1",
]
if FAST:
    overrides += ["data.options.num_images=8", "data.tile_size=null", "data.batch_size=4",
                  "train.epochs=2", "schedule.warmup_steps=0", "train.boundary_metric=false"]
else:
    overrides += ["data.options.num_images=32", "data.tile_size=96", "train.epochs=40",
                  "train.time_budget_s=150"]

start = time.time()
summary = train(load_config(None, overrides))
print(f"{summary['steps']} <<steps in::passos em>> {time.time() - start:.0f} s, "
      f"<<stopped by::parada por>>: {summary['reason']}")
print(f"<<validation membrane Dice::Dice da membrana na validação>>: "
      f"{summary['last']['dice.1']:.3f}")
""")

md("""
The run folder holds the resolved config, `metrics.csv`, the curves and the checkpoints.
`unetlab.load_model` rebuilds the best model from its folder, without any training code.
""", """
A pasta do treino guarda a configuração resolvida, `metrics.csv`, as curvas e os
checkpoints. `unetlab.load_model` reconstrói o melhor modelo a partir da pasta, sem
precisar de código de treinamento.
""")

code("""
print(sorted(p.name for p in Path("runs/tutorial_unet").iterdir()))
model = unetlab.load_model("runs/tutorial_unet/checkpoints/best")   # eval mode

from unetlab.metrics import SegmentationMetrics, pixel_error

val_set = build_dataset("membranes", split="val", num_images=4, size=128)
images = torch.stack([val_set[i]["image"] for i in range(len(val_set))])
masks = torch.stack([val_set[i]["mask"] for i in range(len(val_set))])
with torch.no_grad():
    logits = model(images)                     # (N, 2, H, W): logits, no softmax inside
prediction = logits.argmax(1)

metrics = SegmentationMetrics(num_classes=2)
metrics.update(logits, masks)
result = metrics.compute()
print(f"<<membrane IoU::IoU da membrana>> {result['iou'][1]:.3f} | "
      f"<<membrane Dice::Dice da membrana>> {result['dice'][1]:.3f} | "
      f"<<pixel error::erro de pixel>> {pixel_error(prediction, masks):.3f}")

fig, axes = plt.subplots(3, 4, figsize=(10, 7.5))
for i in range(4):
    axes[0, i].imshow(images[i, 0], cmap="gray")
    axes[1, i].imshow(masks[i], cmap="gray_r", interpolation="nearest")
    axes[2, i].imshow(prediction[i] != masks[i], cmap="Reds", interpolation="nearest")
for ax, title in zip(axes[:, 0], ["<<image::imagem>>", "<<label::rótulo>>",
                                  "<<errors (red)::erros (vermelho)>>"]):
    ax.set_ylabel(title)
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
show(fig)
""")

md("""
## 3. A large image, tile by tile

A microscope image can be much larger than what fits in memory at once. The
overlap-tile strategy predicts overlapping tiles, reads mirrored context at the image
border, and blends the tiles into one seamless map. `predict_tiled` does it for any
model; with a same-padding U-Net the tiled result matches a whole-image pass.
""", """
## 3. Uma imagem grande, bloco a bloco

Uma imagem de microscópio pode ser muito maior do que cabe na memória de uma vez. A
estratégia de *overlap-tile* prediz blocos sobrepostos, usa o contexto espelhado na
borda da imagem e combina os blocos num mapa contínuo, sem emendas. `predict_tiled`
faz isso para qualquer modelo; com uma U-Net de padding "same", o resultado em blocos
coincide com uma passada na imagem inteira.
""")

code("""
from unetlab.inference import predict_tiled

big = build_dataset("membranes", split="test", num_images=1, size=256)[0]
tiled = predict_tiled(model, big["image"], tile_size=96, overlap=0.25)   # (2, 256, 256)
with torch.no_grad():
    whole = model(big["image"][None])[0]
agree = float((tiled.argmax(0) == whole.argmax(0)).float().mean())
print(f"<<tiled vs whole image::blocos vs imagem inteira>>: {100 * agree:.2f}% "
      "<<of pixels get the same class::dos pixels recebem a mesma classe>>")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
axes[0].imshow(big["image"][0], cmap="gray"); axes[0].set_title("<<256x256 image::imagem 256x256>>")
axes[1].imshow(tiled.softmax(0)[1], cmap="magma")
axes[1].set_title("<<P(membrane), 96px tiles::P(membrana), blocos de 96 px>>")
axes[2].imshow(tiled.argmax(0), cmap="gray_r"); axes[2].set_title("<<prediction::predição>>")
for ax in axes:
    ax.axis("off")
show(fig)
""")

md("""
## 4. Real data: ISBI 2012 (if present)

The U-Net paper trained on 30 slices of the ISBI 2012 challenge. When the folder
`shared/data/isbi2012` is next to the project (or `UNETLAB_ISBI` points to it; an empty
`UNETLAB_ISBI` skips the section), this section trains on 20 real slices with the paper's
augmentation (elastic deformation) and validates on slices 20-24. Otherwise it says so
and moves on.
""", """
## 4. Dados reais: ISBI 2012 (se disponíveis)

O artigo da U-Net treinou com 30 fatias do desafio ISBI 2012. Quando a pasta
`shared/data/isbi2012` está ao lado do projeto (ou `UNETLAB_ISBI` aponta para ela; com
`UNETLAB_ISBI` vazia a seção fica de fora), esta seção treina com 20 fatias reais usando a
aumento de dados do artigo (deformação elástica) e valida nas fatias 20 a 24. Caso
contrário, ela avisa e segue adiante.
""")

code("""
# UNETLAB_ISBI, when set, is the only place looked at (set it empty to skip this section)
candidates = [os.environ["UNETLAB_ISBI"]] if "UNETLAB_ISBI" in os.environ else [
    "../shared/data/isbi2012", "../../shared/data/isbi2012",
    Path(unetlab.__file__).resolve().parents[3] / "shared" / "data" / "isbi2012"]
isbi_root = next((Path(c) for c in candidates if c and (Path(c) / "train").is_dir()), None)
print("ISBI 2012:", isbi_root if isbi_root else
      "<<not found, skipping this section::não encontrado, esta seção fica de fora>>")

if isbi_root is not None:
    isbi_overrides = [
        "data.dataset=isbi2012", f"data.root={isbi_root}", "data.options={}",
        "data.val_options={}", "data.augment=paper", "data.batch_size=4",
        "model.options.channels=[16,32,64,128]", "train.progress=false",
        "train.out_dir=runs/tutorial_isbi", "train.best_metric=pixel_error",
    ]
    if FAST:
        isbi_overrides += ["data.tile_size=64", "train.max_steps=2", "train.epochs=1",
                           "schedule.warmup_steps=0", "train.boundary_metric=false"]
    else:
        isbi_overrides += ["data.tile_size=128", "train.epochs=null",
                           "train.time_budget_s=240", "train.val_every=10"]
    isbi_summary = train(load_config(None, isbi_overrides))
    print(f"{isbi_summary['steps']} <<steps, stopped by::passos, parada por>>: "
          f"{isbi_summary['reason']}")
    isbi_model = unetlab.load_model("runs/tutorial_isbi/checkpoints/last")
    val_slice = build_dataset("isbi2012", isbi_root, split="val")[0]
    crop = val_slice["image"][:, :256, :256]
    with torch.no_grad():
        isbi_pred = isbi_model(crop[None]).argmax(1)[0]
    print(f"<<pixel error on a 256x256 crop of slice::erro de pixel num recorte 256x256 da fatia>> "
          f"{val_slice['name']}: "
          f"{pixel_error(isbi_pred, val_slice['mask'][:256, :256]):.4f}")
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
    axes[0].imshow(crop[0], cmap="gray")
    axes[0].set_title(f"<<ISBI slice::fatia do ISBI>> {val_slice['name']}")
    axes[1].imshow(val_slice["mask"][:256, :256], cmap="gray_r")
    axes[1].set_title("<<label::rótulo>>")
    axes[2].imshow(isbi_pred, cmap="gray_r"); axes[2].set_title("<<prediction::predição>>")
    for ax in axes:
        ax.axis("off")
    show(fig)
""")

md("""
## 5. Attention U-Net: where does the network look?

An Attention U-Net puts a gate on every skip connection: from the skip features and the
coarser decoder features it computes a coefficient between 0 and 1 per pixel and
multiplies the skip features by it. After a forward pass, `model.attention_maps()`
returns these coefficients. We train a tiny one for a few dozen steps and look.
""", """
## 5. Attention U-Net: para onde a rede olha?

A Attention U-Net coloca uma porta de atenção (*attention gate*) em cada conexão de
salto: a partir das características do salto e das características de menor resolução
do decodificador, ela calcula um coeficiente entre 0 e 1 por pixel e multiplica as
características do salto por ele. Depois de uma passagem direta (*forward*),
`model.attention_maps()` devolve esses coeficientes. Vamos treinar uma rede minúscula por
algumas dezenas de passos e observar.
""")

code("""
from unetlab.figures.attention import train_tiny_attention_unet

steps, att_size = (3, 32) if FAST else (80, 64)
att_model, att_images, att_masks, att_dice = train_tiny_attention_unet(steps=steps, size=att_size)
with torch.no_grad():
    att_pred = att_model(att_images[:1]).argmax(1)[0]
maps = att_model.attention_maps()
print(f"{steps} <<steps, membrane Dice::passos, Dice da membrana>> {att_dice:.2f}; "
      "<<gates::portas>>:", [tuple(a.shape) for a in maps])

fig, axes = plt.subplots(1, 3 + len(maps), figsize=(12, 3))
axes[0].imshow(att_images[0, 0], cmap="gray"); axes[0].set_title("<<image::imagem>>")
axes[1].imshow(att_masks[0], cmap="gray_r"); axes[1].set_title("<<label::rótulo>>")
axes[2].imshow(att_pred, cmap="gray_r"); axes[2].set_title("<<prediction::predição>>")
for k, alpha in enumerate(maps):
    axes[3 + k].imshow(alpha[0, 0], cmap="viridis")
    axes[3 + k].set_title(f"<<gate::porta>> {k + 1}")
for ax in axes:
    ax.axis("off")
show(fig)
""")

md("""
## 6. Upsampling: transposed convolution, unpooling, interpolation

The decoder must double the resolution at every level. Three families:

- **transposed convolution** (U-Net, FCN): learnable; equal to inserting zeros between
  the input values and convolving. With a kernel that overlaps unevenly (3x3, stride 2)
  it can print a *checkerboard* pattern;
- **max-unpooling** (SegNet): no parameters; puts each value back at the position of the
  maximum recorded by the encoder's pooling, zeros elsewhere;
- **interpolation** (nearest, bilinear), usually followed by a convolution.

First, the zero-insertion view, checked against PyTorch:
""", """
## 6. Upsampling: convolução transposta, unpooling, interpolação

O decodificador precisa dobrar a resolução a cada nível. Três famílias:

- **convolução transposta** (U-Net, FCN): aprendível; equivale a inserir zeros entre os
  valores da entrada e aplicar uma convolução. Com um kernel que se sobrepõe de forma desigual
  (3x3, stride 2) ela pode imprimir um padrão de *tabuleiro de xadrez* (checkerboard);
- **max-unpooling** (SegNet): sem parâmetros; coloca cada valor de volta na posição do
  máximo registrada pelo pooling do codificador, com zeros no resto;
- **interpolação** (vizinho mais próximo, bilinear), normalmente seguida de uma convolução.

Primeiro, a visão por inserção de zeros, conferida com o PyTorch:
""")

code("""
import torch.nn.functional as F
from unetlab.figures.upsampling import (TENT_KERNEL, max_unpool_example, overlap_counts,
                                        transposed_conv_as_convolution, upsampling_methods)

x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
parts = transposed_conv_as_convolution(x, TENT_KERNEL, stride=2, padding=1, output_padding=1)
print("<<zeros inserted::zeros inseridos>>:\\n", parts["inserted"])
print("<<output (4x4)::saída (4x4)>>:\\n", parts["output"])
reference = F.conv_transpose2d(torch.from_numpy(x)[None, None],
                               torch.from_numpy(TENT_KERNEL)[None, None],
                               stride=2, padding=1, output_padding=1)[0, 0]
print("<<same as conv_transpose2d::igual a conv_transpose2d>>:",
      np.allclose(parts["output"], reference.numpy()))

unpool = max_unpool_example()
print("max pool:\\n", unpool["pooled"], "\\n<<indices::índices>>:\\n", unpool["indices"])
print("max unpool:\\n", unpool["unpooled"])
print("<<kernel taps per output pixel, 3x3 stride 2::contribuições por pixel, 3x3 passo 2>>"
      " (<<uneven = checkerboard::desigual = tabuleiro>>):\\n",
      overlap_counts(3, 2, 4))
""")

md("""
Now the same membrane image, pooled by 2 and brought back by each method, and the
four upsampling options of `unet` compared by parameter count and by the checkerboard
score of an untrained network's output (the share of its variance in a period-2
pattern: 0 = none, 1 = all; the blockiness score says how blocky it is). The trained
comparison, with accuracy and speed, is in `docs/comparison.md`.
""", """
Agora a mesma imagem de membranas, reduzida pela metade pelo pooling e trazida de volta
por cada método, e as quatro opções de upsampling da `unet` comparadas pelo número de
parâmetros e pelo escore de tabuleiro (checkerboard) da saída de uma rede não treinada
(a fração da variância num padrão de período 2: 0 = nenhum, 1 = tudo; o escore de
blocos diz o quanto ela fica em degraus). A comparação com redes treinadas, com
acurácia e velocidade, está em `docs/comparison.md`.
""")

code("""
from unetlab.compare.artifacts import blockiness_score, checkerboard_score
from unetlab.models.profile import count_parameters

image = val_set[0]["image"][0].numpy()
up = upsampling_methods(image)
names = ["nearest", "bilinear", "max_unpool", "transpose_bilinear_init", "transpose_random_init"]
fig, axes = plt.subplots(1, 6, figsize=(15, 3))
axes[0].imshow(image, cmap="gray"); axes[0].set_title("original")
for ax, name in zip(axes[1:], names):
    ax.imshow(up[name], cmap="gray")
    ax.set_title(f"{name}\\n<<checkerboard::tabuleiro>> {checkerboard_score(up[name]):.2f}, "
                 f"<<blocks::blocos>> {blockiness_score(up[name]):.2f}", fontsize=8)
for ax in axes:
    ax.axis("off")
show(fig)

torch.manual_seed(0)
for mode in ["transpose", "bilinear", "nearest", "unpool"]:
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(16, 32, 64),
                               upsample=mode).eval()
    with torch.no_grad():
        out = net(images[:1])[0]
    print(f"upsample={mode:9s} <<parameters::parâmetros>> {count_parameters(net):7,d}   "
          f"<<checkerboard score at init::escore de tabuleiro na inicialização>> "
          f"{checkerboard_score(out):.3f}")
""")

md("""
## Where to go next

- `unetlab demo` trains and evaluates the whole pipeline from the command line;
  `unetlab train configs/isbi2012_cpu30.yaml` reproduces the paper's setting on a CPU.
- `docs/course/` follows the chapter: the U shape, skip connections, upsampling,
  padding and tiles, augmentation, losses, the training loop, FCN vs SegNet vs U-Net,
  Res-UNet and Attention U-Net.
- Exercises: switch the loss to `"ce"` and compare the membrane Dice; train with
  `model.name=attention_unet` or `resunet`; change `upsample` and watch the
  checkerboard score after training.
""", """
## Próximos passos

- `unetlab demo` treina e avalia o pipeline inteiro pela linha de comando;
  `unetlab train configs/isbi2012_cpu30.yaml` reproduz o cenário do artigo em CPU.
- `docs/curso/` acompanha o capítulo: a forma em U, as conexões de salto, o upsampling,
  padding e blocos (tiles), aumento de dados, funções de perda, o loop de
  treinamento, FCN vs SegNet vs U-Net, Res-UNet e Attention U-Net.
- Exercícios: troque a perda para `"ce"` e compare o Dice da membrana; treine com
  `model.name=attention_unet` ou `resunet`; mude o `upsample` e observe o escore de
  tabuleiro depois do treino.
""")


#: the notebook-level metadata of every written notebook (execution would add the
#: kernel's Python version and more: replaced by this so that a rerun changes no byte)
METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}

#: figures stored in the notebooks: 80 dpi keeps each notebook well under 1.5 MB
FIGURE_DPI = 80


def build(language: str) -> nbformat.NotebookNode:
    """The notebook in ``language`` ("en" or "pt"), without outputs."""
    index = {"en": 1, "pt": 2}[language]
    nb = nbformat.v4.new_notebook()
    nb.metadata = nbformat.from_dict(METADATA)
    for i, cell in enumerate(CELLS):
        maker = nbformat.v4.new_markdown_cell if cell[0] == "markdown" else \
            nbformat.v4.new_code_cell
        nb.cells.append(maker(cell[index], id=f"{language}-{i:02d}"))
    return nb


def cells_of(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(type, source) of every cell: what the generator decides, outputs aside."""
    return [(c.cell_type, c.source) for c in nb.cells]


def keep_outputs(stored: nbformat.NotebookNode, nb: nbformat.NotebookNode) -> bool:
    """Copy the outputs of ``stored`` into ``nb`` when their code cells are the same.

    Outputs come from the code alone, so a change in the text (markdown) keeps them; any
    change in a code cell, or in their number, drops them all (False).
    """
    code = [[c for c in book.cells if c.cell_type == "code"] for book in (stored, nb)]
    if [c.source for c in code[0]] != [c.source for c in code[1]]:
        return False
    for old, new in zip(*code):
        new.outputs, new.execution_count = old.outputs, old.execution_count
    return True


def execute(nb: nbformat.NotebookNode, workdir: Path, timeout: int = 1200) -> float:
    """Run ``nb`` in place with nbclient, ``workdir`` as its current folder; seconds taken.

    A real run: ``UNETLAB_FAST`` is removed and ``UNETLAB_ISBI`` set empty (the ISBI 2012
    section skips, as in a fresh clone, which has no ../shared/data), so the stored
    outputs are what anyone gets from the repository alone. Timings are not recorded and
    the notebook metadata is reset, so the file holds only sources and outputs.
    """
    import time

    from nbclient import NotebookClient

    os.environ.pop("UNETLAB_FAST", None)
    os.environ["UNETLAB_ISBI"] = ""
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    kwargs = f"{{'bbox_inches': 'tight', 'dpi': {FIGURE_DPI}}}"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            extra_arguments=[f"--InlineBackend.print_figure_kwargs={kwargs}"],
                            resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    nb.metadata = nbformat.from_dict(METADATA)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _merge_streams(cell.outputs)
    return seconds


def _merge_streams(outputs: list) -> list:
    """Consecutive prints to one stream as one output (how the kernel splits them varies
    from run to run: merged, a rerun changes only what the code prints differently)."""
    merged: list = []
    for output in outputs:
        if (output.output_type == "stream" and merged and merged[-1].output_type == "stream"
                and merged[-1].name == output.name):
            merged[-1].text += output.text
        else:
            merged.append(output)
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--execute", action="store_true",
                        help="also run each notebook (a real run, not UNETLAB_FAST; a few "
                             "minutes each on a CPU) and store its outputs in the file")
    parser.add_argument("--timeout", type=int, default=1200,
                        help="seconds one cell may run with --execute (default 1200)")
    args = parser.parse_args(argv)
    for language in ("en", "pt"):
        path = HERE / f"tutorial_{language}.ipynb"
        nb = build(language)
        if args.execute:
            with tempfile.TemporaryDirectory(prefix="unetlab-notebook-") as workdir:
                seconds = execute(nb, Path(workdir), timeout=args.timeout)
            print(f"executed {path.name} in {seconds:.0f} s")
        elif not (path.exists() and keep_outputs(nbformat.read(path, as_version=4), nb)):
            print(f"{path.name}: the code changed, run with --execute to store its outputs",
                  file=sys.stderr)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
