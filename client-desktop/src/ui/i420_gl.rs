//! Draws video pictures from their I420 planes with OpenGL: three single-channel textures per
//! stream (Y at full size, U and V at half), created once and updated in place with a
//! sub-image upload when a newer picture comes, and one fragment shader that converts BT.601
//! video-range YUV to RGB while sampling. No CPU colour conversion, no RGBA copy, no blending
//! (pictures are opaque). Runs inside egui's paint pass as an `egui_glow` paint callback;
//! needs GL 3.0 / GLES 3.0 shaders (`R8` textures, `gl_VertexID`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eframe::egui_glow::{self, ShaderVersion};
use eframe::glow::{self, HasContext};
use vcall_engine::{Stream, VideoPicture};

const VERTEX_SHADER: &str = r#"
out vec2 v_tc;
void main() {
    // A quad over the whole viewport (egui sets it to the tile's picture) as a strip.
    vec2 corner = vec2(float(gl_VertexID & 1), float((gl_VertexID >> 1) & 1));
    v_tc = vec2(corner.x, 1.0 - corner.y);
    gl_Position = vec4(corner * 2.0 - 1.0, 0.0, 1.0);
}
"#;

const FRAGMENT_SHADER: &str = r#"
uniform sampler2D u_y;
uniform sampler2D u_u;
uniform sampler2D u_v;
in vec2 v_tc;
out vec4 f_color;
void main() {
    // BT.601, video range, as vcall_media's CPU conversion does.
    float y = 1.164383 * (texture(u_y, v_tc).r - 0.062745);
    float u = texture(u_u, v_tc).r - 0.501961;
    float v = texture(u_v, v_tc).r - 0.501961;
    f_color = vec4(y + 1.596027 * v, y - 0.391762 * u - 0.812968 * v, y + 2.017232 * u, 1.0);
}
"#;

/// Whether this GL can run the I420 shader (GLSL 1.40 or GLSL ES 3.00 and newer).
pub fn supported(gl: &glow::Context) -> bool {
    ShaderVersion::get(gl).is_new_shader_interface()
}

/// One stream's planes on the GPU.
struct PlaneTextures {
    /// Y, U, V.
    textures: [glow::Texture; 3],
    size: [usize; 2],
    sequence: u64,
}

struct Program {
    program: glow::Program,
    /// An empty vertex array: core profiles draw nothing without one bound.
    vertex_array: glow::VertexArray,
}

/// The GL side: the shader program and every stream's plane textures. Shared between the UI
/// (which says which streams to forget) and the paint callbacks (which upload and draw).
#[derive(Default)]
pub struct I420Renderer {
    program: Option<Result<Program, String>>,
    streams: HashMap<Stream, PlaneTextures>,
    /// Streams no longer shown; their textures are deleted at the next paint (GL work happens
    /// only inside paint callbacks, where the context is current).
    forget: Vec<Stream>,
}

impl I420Renderer {
    /// A renderer to share between the UI and its paint callbacks.
    pub fn shared() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self::default()))
    }

    /// A paint callback that draws `picture` of `stream` over the callback's whole rect.
    pub fn callback(
        renderer: &Arc<Mutex<Self>>,
        stream: Stream,
        picture: Arc<VideoPicture>,
    ) -> egui_glow::CallbackFn {
        let renderer = Arc::clone(renderer);
        egui_glow::CallbackFn::new(move |_info, painter| {
            if let Ok(mut renderer) = renderer.lock() {
                renderer.paint(painter.gl(), stream, &picture);
            }
        })
    }

    /// Forgets every stream `keep` says no to (their textures go at the next paint).
    pub fn retain(&mut self, keep: impl Fn(Stream) -> bool) {
        let gone: Vec<Stream> = self.streams.keys().copied().filter(|s| !keep(*s)).collect();
        self.forget.extend(gone);
    }

    /// Why the shader cannot be used, once it was tried and failed (the UI then falls back to
    /// RGBA textures).
    pub fn failure(&self) -> Option<&str> {
        match &self.program {
            Some(Err(why)) => Some(why),
            _ => None,
        }
    }

    /// As after a shader that failed to build (for tests of the fallback).
    #[cfg(test)]
    pub(crate) fn fail(&mut self, why: &str) {
        self.program = Some(Err(why.to_owned()));
    }

    /// Uploads `picture` unless it is already on the GPU, and draws it over the viewport.
    fn paint(&mut self, gl: &glow::Context, stream: Stream, picture: &VideoPicture) {
        // SAFETY (all blocks below): called from egui_glow's paint pass, with its context
        // current on this thread; every object used was created on this context.
        for gone in std::mem::take(&mut self.forget) {
            if gone != stream
                && let Some(planes) = self.streams.remove(&gone)
            {
                unsafe {
                    planes
                        .textures
                        .into_iter()
                        .for_each(|t| gl.delete_texture(t))
                };
            }
        }
        let program = match self.program.get_or_insert_with(|| {
            let compiled = unsafe { compile(gl) };
            if let Err(why) = &compiled {
                tracing::error!("video pictures cannot be drawn: {why}");
            }
            compiled
        }) {
            Ok(program) => program,
            Err(_) => return,
        };
        let [width, height] = picture.size();
        let planes = match self.streams.get_mut(&stream) {
            Some(planes) if planes.size == [width, height] => planes,
            _ => {
                let Ok(textures) = (unsafe { allocate(gl, [width, height]) }) else {
                    return;
                };
                if let Some(old) = self.streams.insert(
                    stream,
                    PlaneTextures {
                        textures,
                        size: [width, height],
                        sequence: 0,
                    },
                ) {
                    unsafe { old.textures.into_iter().for_each(|t| gl.delete_texture(t)) };
                }
                self.streams.get_mut(&stream).expect("just inserted")
            }
        };
        let sizes = plane_sizes([width, height]);
        unsafe {
            if planes.sequence != picture.sequence {
                gl.pixel_store_i32(glow::UNPACK_ALIGNMENT, 1);
                let data = [picture.planes.y(), picture.planes.u(), picture.planes.v()];
                for ((texture, [w, h]), data) in planes.textures.iter().zip(sizes).zip(data) {
                    gl.bind_texture(glow::TEXTURE_2D, Some(*texture));
                    gl.tex_sub_image_2d(
                        glow::TEXTURE_2D,
                        0,
                        0,
                        0,
                        w as i32,
                        h as i32,
                        glow::RED,
                        glow::UNSIGNED_BYTE,
                        glow::PixelUnpackData::Slice(Some(data)),
                    );
                }
                planes.sequence = picture.sequence;
            }
            gl.disable(glow::BLEND);
            gl.use_program(Some(program.program));
            for (unit, texture) in planes.textures.iter().enumerate() {
                gl.active_texture(glow::TEXTURE0 + unit as u32);
                gl.bind_texture(glow::TEXTURE_2D, Some(*texture));
            }
            gl.bind_vertex_array(Some(program.vertex_array));
            gl.draw_arrays(glow::TRIANGLE_STRIP, 0, 4);
            gl.bind_vertex_array(None);
            // egui restores its own state after a callback, but binds textures on whatever
            // unit is active.
            gl.active_texture(glow::TEXTURE0);
        }
    }
}

/// The sizes of the Y, U and V planes of a `width`x`height` picture.
fn plane_sizes([width, height]: [usize; 2]) -> [[usize; 2]; 3] {
    let chroma = [width / 2, height / 2];
    [[width, height], chroma, chroma]
}

/// Three `R8` textures for the planes of a picture this large.
unsafe fn allocate(gl: &glow::Context, size: [usize; 2]) -> Result<[glow::Texture; 3], String> {
    let mut textures = Vec::with_capacity(3);
    for [w, h] in plane_sizes(size) {
        unsafe {
            let texture = gl.create_texture()?;
            gl.bind_texture(glow::TEXTURE_2D, Some(texture));
            for (parameter, value) in [
                (glow::TEXTURE_MIN_FILTER, glow::LINEAR),
                (glow::TEXTURE_MAG_FILTER, glow::LINEAR),
                (glow::TEXTURE_WRAP_S, glow::CLAMP_TO_EDGE),
                (glow::TEXTURE_WRAP_T, glow::CLAMP_TO_EDGE),
            ] {
                gl.tex_parameter_i32(glow::TEXTURE_2D, parameter, value as i32);
            }
            gl.tex_image_2d(
                glow::TEXTURE_2D,
                0,
                glow::R8 as i32,
                w as i32,
                h as i32,
                0,
                glow::RED,
                glow::UNSIGNED_BYTE,
                glow::PixelUnpackData::Slice(None),
            );
            textures.push(texture);
        }
    }
    Ok([textures[0], textures[1], textures[2]])
}

/// Compiles and links the I420 program, with the GLSL header egui itself uses on this GL.
unsafe fn compile(gl: &glow::Context) -> Result<Program, String> {
    let version = ShaderVersion::get(gl);
    if !version.is_new_shader_interface() {
        return Err(format!("{version:?} shaders cannot sample R8 textures"));
    }
    let precision = if version.is_embedded() {
        "precision highp float;\n"
    } else {
        ""
    };
    unsafe {
        let program = gl.create_program()?;
        let mut shaders = Vec::new();
        for (kind, source) in [
            (glow::VERTEX_SHADER, VERTEX_SHADER),
            (glow::FRAGMENT_SHADER, FRAGMENT_SHADER),
        ] {
            let shader = gl.create_shader(kind)?;
            gl.shader_source(
                shader,
                &format!("{}{precision}{source}", version.version_declaration()),
            );
            gl.compile_shader(shader);
            if !gl.get_shader_compile_status(shader) {
                return Err(format!(
                    "I420 shader does not compile: {}",
                    gl.get_shader_info_log(shader)
                ));
            }
            gl.attach_shader(program, shader);
            shaders.push(shader);
        }
        gl.link_program(program);
        if !gl.get_program_link_status(program) {
            return Err(format!(
                "I420 shader does not link: {}",
                gl.get_program_info_log(program)
            ));
        }
        for shader in shaders {
            gl.detach_shader(program, shader);
            gl.delete_shader(shader);
        }
        gl.use_program(Some(program));
        for (unit, name) in ["u_y", "u_u", "u_v"].into_iter().enumerate() {
            let location = gl.get_uniform_location(program, name);
            gl.uniform_1_i32(location.as_ref(), unit as i32);
        }
        let vertex_array = gl.create_vertex_array()?;
        Ok(Program {
            program,
            vertex_array,
        })
    }
}
